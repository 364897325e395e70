"""Validates compose files against the official Compose Specification JSON schema.

usage: validate_compose.py SCHEMA FILE...   (exit 1 and one line per problem when invalid)
"""
import json
import sys

import jsonschema
import yaml


def main() -> int:
    schema_path, *files = sys.argv[1:]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    validator = jsonschema.Draft7Validator(schema)
    failed = False
    for path in files:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)  # resolves YAML anchors and << merge keys
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        for error in errors:
            failed = True
            where = "/".join(str(p) for p in error.path) or "(root)"
            print(f"{path}: {where}: {error.message}")
        if not errors:
            print(f"{path}: valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
