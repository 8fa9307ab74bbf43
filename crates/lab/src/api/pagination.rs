//! Latitude's paging: `page[size]` (default 20), `page[number]` (default 1, starting at 1), and
//! `stats[total]=count`, which adds `meta.stats.total.count`. There is no `links` object.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::errors::ApiError;

/// Paging parameters of one list request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub size: usize,
    pub number: usize,
    pub with_total: bool,
}

impl Page {
    /// Reads the paging parameters from decoded query parameters.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Page, ApiError> {
        let positive = |key: &str, default: usize| -> Result<usize, ApiError> {
            match query.get(key) {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(
                            key,
                            format!("{key} must be a positive integer, got {raw:?}"),
                        )
                    }),
            }
        };
        let with_total = match query.get("stats[total]").map(String::as_str) {
            None => false,
            Some("count") => true,
            Some(other) => {
                return Err(ApiError::invalid_parameter(
                    "stats[total]",
                    format!("stats[total] only supports \"count\", got {other:?}"),
                ));
            }
        };
        Ok(Page {
            size: positive("page[size]", 20)?,
            number: positive("page[number]", 1)?,
            with_total,
        })
    }

    /// The items of this page and the `meta` object of the response.
    pub fn apply<T>(&self, items: Vec<T>) -> (Vec<T>, Value) {
        let total = items.len();
        let page: Vec<T> = items
            .into_iter()
            .skip(self.size.saturating_mul(self.number - 1))
            .take(self.size)
            .collect();
        let meta = if self.with_total {
            json!({"stats": {"total": {"count": total}}})
        } else {
            json!({})
        };
        (page, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_slicing() {
        let p = Page::from_query(&query(&[])).unwrap();
        assert_eq!(
            p,
            Page {
                size: 20,
                number: 1,
                with_total: false
            }
        );
        let p = Page::from_query(&query(&[
            ("page[size]", "2"),
            ("page[number]", "3"),
            ("stats[total]", "count"),
        ]))
        .unwrap();
        let (items, meta) = p.apply((1..=5).collect::<Vec<_>>());
        assert_eq!(items, [5]);
        assert_eq!(meta, json!({"stats":{"total":{"count":5}}}));
        let p = Page {
            size: 2,
            number: 4,
            with_total: false,
        };
        assert!(p.apply((1..=5).collect::<Vec<_>>()).0.is_empty());
    }

    #[test]
    fn bad_values_are_422() {
        for q in [
            [("page[size]", "0")],
            [("page[number]", "x")],
            [("stats[total]", "sum")],
        ] {
            let err = Page::from_query(&query(&q)).unwrap_err();
            assert_eq!(err.status.as_u16(), 422);
        }
    }
}
