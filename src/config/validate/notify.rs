//! `[instance.notify]`: the hooks run on each transition.

use toml::Spanned;

use super::{Validator, RUN_TIME_MAX, RUN_TIME_MIN};
use crate::config::raw::RawNotify;
use crate::config::{defaults, NotifyConfig};

impl Validator<'_> {
    pub(super) fn notify(
        &mut self,
        who: &str,
        raw: Option<Spanned<RawNotify>>,
    ) -> Option<NotifyConfig> {
        let Some(raw) = raw else {
            return Some(NotifyConfig {
                timeout: defaults::NOTIFY_TIMEOUT,
                ..NotifyConfig::default()
            });
        };
        let raw = raw.into_inner();
        let label = format!("{who}: notify");
        let user = self.user_name(&label, "user", raw.user);
        let master = self.command(&label, "master", raw.master);
        let backup = self.command(&label, "backup", raw.backup);
        let fault = self.command(&label, "fault", raw.fault);
        let stop = self.command(&label, "stop", raw.stop);
        let any = self.command(&label, "any", raw.any);
        let before_claim = self.command(&label, "before_claim", raw.before_claim);
        let after_release = self.command(&label, "after_release", raw.after_release);
        let timeout = self.duration_in(
            &label,
            "timeout",
            raw.timeout.as_ref(),
            defaults::NOTIFY_TIMEOUT,
            RUN_TIME_MIN,
            RUN_TIME_MAX,
        );
        Some(NotifyConfig {
            master: master?,
            backup: backup?,
            fault: fault?,
            stop: stop?,
            any: any?,
            before_claim: before_claim?,
            after_release: after_release?,
            timeout: timeout?,
            user: user?,
        })
    }
}
