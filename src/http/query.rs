//! `Query<T>`: a query string read into typed parts, each a `#[derive(Deserialize, IntoParams)]`
//! struct, so the OpenAPI document lists exactly the parameters that are read. A handler takes
//! one part or a tuple of parts; together they name every parameter it accepts. Unknown and
//! repeated parameters are refused (a part may name list parameters, whose repeats join with
//! commas: `signal_type=wifi&signal_type=ble` is `signal_type=wifi,ble`), and a value that does
//! not parse is a problem+json 400 naming its parameter in the type's own words.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::openapi::path::ParameterIn;
use utoipa::IntoParams;

use crate::error::ApiError;

/// One typed group of query parameters.
pub trait QueryPart: DeserializeOwned + IntoParams {
    /// Parameters that may repeat; their values are joined with commas.
    const LISTS: &'static [&'static str] = &[];

    /// The parameters' names, as the OpenAPI document shows them.
    fn names() -> Vec<String> {
        Self::into_params(|| Some(ParameterIn::Query))
            .into_iter()
            .map(|p| p.name)
            .collect()
    }
}

/// What a handler reads from its query: one part or a tuple of parts.
pub trait QueryParams: Sized {
    fn names() -> Vec<String>;
    fn lists() -> Vec<&'static str>;
    fn from_query(query: &Normalised) -> Result<Self, ApiError>;
}

impl<P: QueryPart> QueryParams for P {
    fn names() -> Vec<String> {
        <P as QueryPart>::names()
    }
    fn lists() -> Vec<&'static str> {
        P::LISTS.to_vec()
    }
    fn from_query(query: &Normalised) -> Result<Self, ApiError> {
        query.part()
    }
}

macro_rules! tuple_params {
    ($($p:ident),+) => {
        impl<$($p: QueryPart),+> QueryParams for ($($p,)+) {
            fn names() -> Vec<String> {
                let mut names = Vec::new();
                $(names.extend(<$p as QueryPart>::names());)+
                names
            }
            fn lists() -> Vec<&'static str> {
                let mut lists = Vec::new();
                $(lists.extend_from_slice($p::LISTS);)+
                lists
            }
            fn from_query(query: &Normalised) -> Result<Self, ApiError> {
                Ok(($(query.part::<$p>()?,)+))
            }
        }
    };
}

tuple_params!(A, B);
tuple_params!(A, B, C);
tuple_params!(A, B, C, D);
tuple_params!(A, B, C, D, E);

/// The query string as `T`, or a problem+json 400 naming the first parameter that cannot be used.
pub struct Query<T>(pub T);

impl<T: QueryParams, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Reads `raw` (a query string) as `T`.
pub fn parse<T: QueryParams>(raw: &str) -> Result<T, ApiError> {
    T::from_query(&Normalised::new(raw, &T::names(), &T::lists())?)
}

/// A query whose names are all known, each once (lists joined), encoded for the deserializer.
pub struct Normalised(String);

impl Normalised {
    fn new(raw: &str, names: &[String], lists: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            if !names.iter().any(|n| *n == key) {
                return Err(ApiError::bad_parameter(&key, "unknown parameter"));
            }
            match pairs.iter_mut().find(|(k, _)| *k == key) {
                Some((_, joined)) if lists.contains(&key.as_ref()) => {
                    joined.push(',');
                    joined.push_str(&value);
                }
                Some(_) => return Err(ApiError::bad_parameter(&key, "given more than once")),
                None => pairs.push((key.into_owned(), value.into_owned())),
            }
        }
        Ok(Self(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish(),
        ))
    }

    fn part<P: DeserializeOwned>(&self) -> Result<P, ApiError> {
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(self.0.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let parameter = e.path().to_string();
            ApiError::bad_parameter(&parameter, plain(&e.inner().to_string()))
        })
    }
}

/// The standard library's number errors, in the words of a query parameter's contract.
fn plain(message: &str) -> String {
    match message {
        "invalid digit found in string"
        | "cannot parse integer from empty string"
        | "number too large to fit in target type"
        | "number too small to fit in target type" => "must be a whole number in range".to_owned(),
        "invalid float literal" | "cannot parse float from empty string" => {
            "must be a number".to_owned()
        }
        other => other.to_owned(),
    }
}

/// Reads an optional field through `FromStr`, for types of this crate that are read from text
/// only here (`#[serde(default, deserialize_with = "query::from_str")]`).
pub fn from_str<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
    text.trim()
        .parse()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A page size: 1 to the server's maximum, its default when absent.
pub fn page_size(limit: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_parameter(
            "limit",
            format!("must be between 1 and {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, IntoParams, PartialEq)]
    #[into_params(parameter_in = Query)]
    struct Page {
        limit: Option<u32>,
    }
    impl QueryPart for Page {}

    #[derive(Debug, Deserialize, IntoParams, PartialEq)]
    #[into_params(parameter_in = Query)]
    struct Kinds {
        signal_type: Option<String>,
    }
    impl QueryPart for Kinds {
        const LISTS: &'static [&'static str] = &["signal_type"];
    }

    fn refused(raw: &str) -> (String, String) {
        match parse::<(Page, Kinds)>(raw) {
            Err(ApiError::BadRequest { detail, parameter }) => {
                (parameter.unwrap_or_default(), detail)
            }
            Err(other) => panic!("{raw}: {other:?}"),
            Ok(_) => panic!("{raw}: accepted"),
        }
    }

    #[test]
    fn repeated_list_parameters_join_with_commas() {
        let (page, kinds) =
            parse::<(Page, Kinds)>("signal_type=wifi&signal_type=ble&limit=5").expect("parsed");
        assert_eq!(kinds.signal_type.as_deref(), Some("wifi,ble"));
        assert_eq!(page.limit, Some(5));
    }

    #[test]
    fn a_repeated_single_parameter_is_refused() {
        assert_eq!(refused("limit=1&limit=2").0, "limit");
    }

    #[test]
    fn a_value_that_does_not_parse_names_its_parameter() {
        let (parameter, detail) = refused("limit=many");
        assert_eq!(parameter, "limit");
        assert!(detail.contains("whole number"), "{detail}");
    }

    #[test]
    fn an_unknown_parameter_is_named() {
        let (parameter, detail) = refused("colour=red");
        assert_eq!(parameter, "colour");
        assert!(detail.contains("unknown parameter"), "{detail}");
    }
}
