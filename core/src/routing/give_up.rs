//! Giving up on a router that keeps failing. A sandboxed router that sleeps or loops costs its
//! deadline on every query it is asked about; after [`GIVE_UP_AFTER`] failed decisions in a
//! row it is not asked again for the rest of the table. Its remaining queries are treated as
//! any failed decision is (they go to the reference, each listed as a routing error saying it
//! was not asked), and the report says who was given up on, after how many failures and why.

use super::routers::{Decision, Router};
use crate::joined::{Row, Table};

/// Failed decisions in a row after which a router that may be given up on is (see
/// [`Router::give_up_after`]). Five: one failure can be the query (a prompt the router
/// chokes on), five in a row at a router's 50 ms deadline cost a quarter of a second, and a
/// router that fails on every query is recognised long before a table of thousands is spent.
pub const GIVE_UP_AFTER: usize = 5;

/// A router given up on: who, after how many failures in a row, why, and what was not asked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GivenUp {
    /// The router's spec.
    pub router: String,
    /// Failed decisions in a row that made it be given up on.
    pub failed_in_a_row: usize,
    /// The query whose decision failed first in that run of failures.
    pub first_query: String,
    /// The first of those failures' message.
    pub first_error: String,
    /// Queries not asked afterwards (sent to the reference).
    pub not_asked: usize,
}

impl std::fmt::Display for GivenUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "router `{}` given up on after {} failed decisions in a row (first, on {}: {}); \
             {} more queries not asked, sent to the reference",
            self.router, self.failed_in_a_row, self.first_query, self.first_error, self.not_asked
        )
    }
}

/// Asks one router row after row, and stops asking once it has failed too often in a row.
pub struct Patience {
    after: Option<usize>,
    in_a_row: usize,
    first: Option<(String, String)>,
    given_up: Option<GivenUp>,
}

impl Patience {
    /// Patience with `router`, as much as it asks for ([`Router::give_up_after`]).
    pub fn new(router: &dyn Router) -> Self {
        Self {
            after: router.give_up_after(),
            in_a_row: 0,
            first: None,
            given_up: None,
        }
    }

    /// `router`'s decision on `row`, checked by `check`; once given up on, the router is not
    /// asked and the error says so.
    pub fn decide(
        &mut self,
        router: &mut dyn Router,
        row: &Row,
        table: &Table,
        check: impl FnOnce(Decision) -> Result<Decision, String>,
    ) -> Result<Decision, String> {
        if let Some(g) = &mut self.given_up {
            g.not_asked += 1;
            return Err(format!(
                "not asked: the router was given up on after {} failed decisions in a row",
                g.failed_in_a_row
            ));
        }
        let decided = router.decide(row, table).and_then(check);
        match &decided {
            Ok(_) => {
                self.in_a_row = 0;
                self.first = None;
            }
            Err(message) => {
                self.in_a_row += 1;
                let (first_query, first_error) = self
                    .first
                    .get_or_insert_with(|| (row.query_id.clone(), message.clone()))
                    .clone();
                if self.after.is_some_and(|k| self.in_a_row >= k) {
                    let g = GivenUp {
                        router: router.name(),
                        failed_in_a_row: self.in_a_row,
                        first_query,
                        first_error,
                        not_asked: 0,
                    };
                    self.given_up = Some(g);
                }
            }
        }
        decided
    }

    /// Whom it gave up on, if anyone.
    pub fn given_up(self) -> Option<GivenUp> {
        self.given_up
    }
}
