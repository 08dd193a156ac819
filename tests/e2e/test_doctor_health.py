"""``assistant doctor`` and ``assistant sync`` on a calendar whose password is refused:
a real process, Radicale checking passwords (a real 401) behind the fault proxy. After
five refused tries the account is parked; doctor says so with the fix, without trying it
again (a provider may lock an account for repeated wrong logins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli import Cli
from tests.support.fault_proxy import FaultProxy
from tests.support.radicale import RadicaleWithLogins
from tests.support.smtp import SmtpServer


@pytest.mark.slow  # nine runs of the CLI; the short form is in tests/integration
def test_doctor_names_the_parked_account_and_the_fix_without_trying_it(tmp_path: Path) -> None:
    with (
        SmtpServer() as smtp,
        RadicaleWithLogins(tmp_path / "radicale", {"alex": "right"}) as radicale,
        FaultProxy(radicale.url) as proxy,
    ):
        url = proxy.proxied(radicale.new_calendar("work", user="alex"))
        cli = Cli(tmp_path)
        cli.env["ALEX_PASSWORD"] = "wrong"
        cli("init", str(tmp_path))
        cfg = tmp_path / "assistant.toml"
        cfg.write_text(cfg.read_text() + f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\n'
                       'from_address = "assistant@example.com"\n')  # fmt: skip
        cli("pair", "add", "alex", "--manager", "alex@example.com", "--assistant",
            "sam@example.com")  # fmt: skip
        cli("account", "add", "work", "--provider", "caldav", "--url", url,
            "--username", "alex", "--password-env", "ALEX_PASSWORD")  # fmt: skip
        proxy.seen.clear()

        outputs = [cli("sync", ok=False).stdout for _ in range(5)]
        assert "parked" not in outputs[3], outputs[3]
        assert "parked until its credentials change" in outputs[4], outputs[4]
        refused = [s for s in proxy.seen if s.status == 401]

        done = cli("doctor", ok=False)
        [line] = [x for x in done.stdout.splitlines() if x.startswith("✗ account 1 work")]
        assert "the provider refuses its password or sign-in: 5 tries since" in line, line
        assert "no longer tried until the credentials change" in line, line
        assert "— fix: Enter the new password" in line, line
        assert [s for s in proxy.seen if s.status == 401] == refused, "doctor did not try it"
        assert done.returncode == 1
