//! Callout results as Envoy reports them, and the core events they become.

use jwt_revocation_core::{Action, Config, Env, NoDecision, Stream};

use super::abi::{CalloutInitError, CalloutResult};

/// The end of a callout, as Envoy reported it to `on_http_filter_http_callout_done`.
#[derive(Debug)]
pub enum CalloutOutcome {
    /// A response, with its `:status` value if it had one.
    Response(Option<Vec<u8>>),
    /// The callout ended without a usable response.
    Failure(CalloutResult),
}

impl CalloutOutcome {
    pub fn new(result: CalloutResult, headers: &[(&[u8], &[u8])]) -> Self {
        if result != CalloutResult::SUCCESS {
            return Self::Failure(result);
        }
        let status = headers
            .iter()
            .find(|(name, _)| *name == b":status")
            .map(|(_, value)| value.to_vec());
        Self::Response(status)
    }

    /// Passes the outcome to the stream.
    pub fn report<'c>(&self, stream: &mut Stream, config: &'c Config, env: Env) -> Action<'c> {
        match self {
            Self::Response(status) => stream.on_callout_response(config, status.as_deref(), env),
            // A reset and an oversized response both leave the service's decision unknown.
            Self::Failure(_) => stream.on_callout_failure(config, NoDecision::ConnectFailure, env),
        }
    }

    /// Returns what Envoy reported beyond the core's reason, for the log.
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::Response(_) => None,
            Self::Failure(CalloutResult::RESET) => Some("the callout stream was reset".to_owned()),
            Self::Failure(CalloutResult::EXCEED_RESPONSE_BUFFER_LIMIT) => {
                Some("the response exceeded Envoy's buffer limit".to_owned())
            }
            Self::Failure(CalloutResult(other)) => {
                Some(format!("Envoy reported unknown callout result {other}"))
            }
        }
    }
}

/// The result of a request to Envoy to send a callout.
pub enum Dispatched {
    /// The callout is in flight.
    Started,
    /// Envoy completed the callout inside `http_callout`.
    Completed(CalloutOutcome),
    /// Envoy did not send the callout.
    Rejected(CalloutInitError),
    /// The done hook that ran inside `http_callout` panicked and marked the filter failed.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_reads_status() {
        let headers: [(&[u8], &[u8]); 2] = [(b"content-length", b"0"), (b":status", b"403")];
        let outcome = CalloutOutcome::new(CalloutResult::SUCCESS, &headers);
        assert!(matches!(outcome, CalloutOutcome::Response(Some(ref s)) if s == b"403"));
        assert_eq!(outcome.detail(), None);
    }

    #[test]
    fn outcome_without_status() {
        let outcome = CalloutOutcome::new(CalloutResult::SUCCESS, &[]);
        assert!(matches!(outcome, CalloutOutcome::Response(None)));
    }

    #[test]
    fn failure_details() {
        let cases = [
            (CalloutResult::RESET, "the callout stream was reset"),
            (
                CalloutResult::EXCEED_RESPONSE_BUFFER_LIMIT,
                "the response exceeded Envoy's buffer limit",
            ),
            (CalloutResult(9), "Envoy reported unknown callout result 9"),
        ];
        for (result, detail) in cases {
            let headers: [(&[u8], &[u8]); 1] = [(b":status", b"200")];
            let outcome = CalloutOutcome::new(result, &headers);
            assert!(matches!(outcome, CalloutOutcome::Failure(_)), "{result:?}");
            assert_eq!(outcome.detail().as_deref(), Some(detail), "{result:?}");
        }
    }
}
