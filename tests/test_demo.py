"""The demo's simulated workers: real conversations over every channel, spread over past days,
so the demo brand sees figures at once (``workervoice demo``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from gateway.cli import main
from store.models import Answer, Worker

from .leaks import assert_no_numbers
from .support import bearer


def test_the_demo_walk_gives_the_brand_real_figures(app, client, services):
    result = app.test_cli_runner().invoke(main, ["demo", "--workers", "12", "--days", "6"])
    assert result.exit_code == 0, result.output
    [brand] = re.findall(r"^brand token: (\S+)$", result.stdout, flags=re.MULTILINE)
    assert re.search(r"^12 simulated workers answered in \d+ conversations", result.stdout, re.M)

    with services.db.session() as db:
        channels = set(db.scalars(select(Answer.channel).distinct()))
        days = set(db.scalars(select(Answer.answered_on).distinct()))
        languages = set(db.scalars(select(Worker.language).distinct()))
        enrolled = db.scalar(select(func.count()).select_from(Worker))
    assert channels == {"sms", "whatsapp", "ussd", "voice"}
    assert languages == {"bn", "en"} and enrolled == 12
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Dhaka")).date()
    assert today not in days and len(days) >= 4
    assert min(days) >= today - timedelta(days=6)

    response = client.get(
        "/api/v1/workplaces/demo-garments/indicators?days=7", headers=bearer(brand)
    )
    figures = response.get_json()
    assert response.status_code == 200 and figures["respondents"] == 12
    shown = [i for i in figures["indicators"] if not i["suppressed"]]
    assert len(shown) >= 5 and all(i["value"] is not None for i in shown)
    numbers = [f"+8801711{900000 + n:06d}" for n in range(12)]
    assert_no_numbers(numbers, services, result.output)
