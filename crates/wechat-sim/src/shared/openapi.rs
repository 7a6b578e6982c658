//! The quota tools (`openapi/quota/get`, `clear_quota/v2`) through the
//! shared state: the rule from `state::openapi`, counted per app in
//! `quota_get_calls`, `quota_clears` and `clears_used_this_month`.

use crate::errcode::WxError;
use crate::state::{ApiQuota, ClearRequest};
use crate::token::Now;

use super::SimState;

impl SimState {
    /// `openapi/quota/get` with `token` for `cgi_path`; counted on the
    /// token's app whatever the answer.
    pub(crate) fn api_quota(
        &self,
        token: Option<&str>,
        cgi_path: Option<&str>,
    ) -> Result<ApiQuota, WxError> {
        let mut core = self.lock();
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            core.stats.uses_missing += 1;
            return Err(WxError::AccessTokenMissing);
        };
        let now = Now::current();
        let owner = core
            .world
            .judge(token, crate::state::Host::Wechat, now)
            .1
            .map(str::to_owned);
        if let Some(app) = owner.and_then(|o| core.stats.apps.get_mut(&o)) {
            app.quota_get_calls += 1;
        }
        core.world
            .api_quota(token, cgi_path, now)
            .map(|(_, quota)| quota)
    }

    /// `clear_quota/v2`: counted on the named app when it exists.
    pub(crate) fn clear_quota_v2(&self, req: ClearRequest<'_>) -> Result<(), WxError> {
        let mut core = self.lock();
        let result = core.world.clear_quota_v2(req, Now::current());
        if let Some(app) = req.appid.and_then(|a| core.stats.apps.get_mut(a)) {
            match result {
                Ok(()) => app.quota_clears += 1,
                Err(_) => app.quota_clears_refused += 1,
            }
        }
        result
    }
}
