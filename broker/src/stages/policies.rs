//! A broker's policies: checked when it opens, parsed only when a decision is not remembered.

use std::path::{Path, PathBuf};

use super::Error;
use crate::cache::PolicyMemo;
use crate::policy::{Asks, Denial, Grant};

/// A broker's policies: the directory's files, checked (strictly validated, or vouched for by
/// the memo) when the broker opens, and parsed only if a decision is not remembered for
/// exactly these files, facts and requests.
pub(super) struct RunPolicies {
    sources: Vec<(PathBuf, String)>,
    key: [u8; 32],
    memo: Option<PolicyMemo>,
    loaded: Option<crate::policy::Policies>,
}

impl RunPolicies {
    pub(super) fn open(dir: Option<&Path>, memo: Option<PolicyMemo>) -> Result<Self, Error> {
        let Some(dir) = dir else {
            tracing::warn!("no policy directory (`--policies DIR`): every request will be denied");
            // Nothing to remember: everything is denied.
            return Ok(Self {
                sources: Vec::new(),
                key: [0; 32],
                memo: None,
                loaded: Some(crate::policy::Policies::from_sources(&[])?),
            });
        };
        let sources = crate::policy::read_sources(dir)?;
        let key = crate::policy::validation_key(&sources);
        let vouched = memo
            .as_ref()
            .is_some_and(|m| crate::policy::ValidationMemo::vouches(m, &key));
        let mut policies = Self {
            sources,
            key,
            memo,
            loaded: None,
        };
        // Not validated before: validated now, so that a bad set refuses early.
        if !vouched {
            policies.load()?;
        }
        Ok(policies)
    }

    fn load(&mut self) -> Result<&crate::policy::Policies, Error> {
        Self::loaded(&mut self.loaded, &self.sources, self.memo.as_ref())
    }

    /// The policies in `slot`, loaded from `sources` first if they are not yet.
    fn loaded<'a>(
        slot: &'a mut Option<crate::policy::Policies>,
        sources: &[(PathBuf, String)],
        memo: Option<&PolicyMemo>,
    ) -> Result<&'a crate::policy::Policies, Error> {
        let policies = match slot.take() {
            Some(policies) => policies,
            None => crate::policy::Policies::from_sources_with(
                sources,
                memo.map(|m| m as &dyn crate::policy::ValidationMemo),
            )?,
        };
        Ok(slot.insert(policies))
    }

    /// The grant or denial, the hash of the policy set that decided it, and whether the
    /// decisions were remembered rather than made now.
    pub(super) fn grant(
        &mut self,
        facts: &crate::policy::Facts,
        asks: &Asks,
        drop_denied: bool,
    ) -> Result<(Result<Grant, Denial>, String, bool), Error> {
        if let Some(memo) = &self.memo
            && let Some(grant) = crate::policy::remembered_grant(memo, &self.key, facts, asks)
        {
            let hash = grant.policy_hash().to_owned();
            return Ok((Ok(grant), hash, true));
        }
        let memo = self.memo.as_ref();
        let policies = Self::loaded(&mut self.loaded, &self.sources, memo)?;
        let memo = memo.map(|m| (m as &dyn crate::policy::DecisionMemo, &self.key));
        let granted = policies.grant_remembering(facts, asks, drop_denied, memo);
        Ok((granted, policies.hash().to_owned(), false))
    }
}
