// The timeline under the map: a window of time (an hour, six, a day) slid across the data's
// extent, which filters the map, and a replay of one day, an hour at a time in 15-minute steps,
// each step shown once the map has drawn it.

const STEP_MS = 15 * 60 * 1000;
const fmt = (t) => new Date(t).toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const dayOf = (t) => {
  const d = new Date(t);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
};

/**
 * Padding that keeps what the map frames in the open: between the side panels and above the
 * timeline, which lie over the map. `margin` px more on every side.
 */
export function openArea(margin) {
  const panel = document.getElementById('panel').getBoundingClientRect();
  const threats = document.getElementById('threats').getBoundingClientRect();
  const timeline = document.getElementById('timeline').getBoundingClientRect();
  const side = window.innerWidth * 0.4;
  return {
    top: margin,
    bottom: Math.min(window.innerHeight - timeline.top + margin, window.innerHeight * 0.4),
    left: Math.min(panel.right + margin, side),
    right: Math.min(window.innerWidth - threats.left + margin, side),
  };
}

/**
 * `extent`: [first, last] ms of the data. `onChange()` is called when the window moves; `idle()`
 * resolves once the map has drawn. Returns `window()`: `{start, end}` (ms) or null when off.
 */
export function initTimeline({ extent, onChange, idle, page }) {
  const span = document.getElementById('tl-span');
  const pos = document.getElementById('tl-pos');
  const day = document.getElementById('tl-day');
  const play = document.getElementById('tl-play');
  const label = document.getElementById('tl-label');
  let [first, last] = extent;
  let replay = null;
  day.value = dayOf(last);

  function current() {
    const width = Number(span.value) * 1000;
    if (!width) return null;
    if (replay) return { start: replay.at - width, end: replay.at };
    const end = first + (Number(pos.value) / Number(pos.max)) * (last - first);
    return { start: end - width, end };
  }

  function update() {
    const w = current();
    page.timeline = w && { ...w, playing: Boolean(replay) };
    label.textContent = w ? `${fmt(w.start)} – ${fmt(w.end)}` : 'all the time range above';
    pos.disabled = !w || Boolean(replay);
    onChange();
  }

  async function run() {
    const start = new Date(`${day.value}T00:00:00`).getTime();
    if (!Number.isFinite(start)) return;
    if (!Number(span.value)) span.value = '3600';
    replay = { at: start + Number(span.value) * 1000 };
    play.textContent = '■ Stop';
    while (replay && replay.at <= start + 24 * 3600 * 1000) {
      update();
      await idle();
      await new Promise((r) => setTimeout(r, 400));
      if (replay) replay.at += STEP_MS;
    }
    replay = null;
    play.textContent = '▶ Replay the day';
    update();
  }

  span.addEventListener('change', update);
  pos.addEventListener('input', update);
  play.addEventListener('click', () => {
    if (replay) replay = null;
    else run();
  });
  update();
  return {
    window: current,
    setExtent(e) {
      [first, last] = e;
    },
  };
}
