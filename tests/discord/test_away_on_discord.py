"""Away periods and holiday calendars on Discord, through the real discord.py client and
the emulator, on SQLite and PostgreSQL.

Discord allows 25 subcommands in the ``/mentor`` group, so ``away`` rides on ``pause``:
``/mentor pause`` alone pauses, and with ``days``, ``weeks`` or ``until`` it is away."""

from __future__ import annotations

from sqlmodel import Session, select

from bot.models import Enrolment, Learner, Workspace
from tests.conftest import Clock
from tests.discord.world import ALICE, DAVE, run, running


def test_pause_with_a_span_is_away_and_settings_take_holidays(store_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(store_url, clock) as world:
            await world.command(ALICE, "start")
            away = await world.command(ALICE, "pause", options={"days": 3})
            assert away.ephemeral
            assert "You are away for 3 days, through Friday 27 November" in away.text
            assert "I'll be back on Monday 30 November at 09:00" in away.text

            weeks = await world.command(ALICE, "pause", options={"weeks": 2})
            assert "Changed: you are away for 14 days" in weeks.text
            until = await world.command(ALICE, "pause", options={"until": "2026-12-04"})
            assert "through Friday 04 December" in until.text
            past = await world.command(ALICE, "pause", options={"until": "2026-11-01"})
            assert "Sorry, 2026-11-01 is in the past" in past.text
            none = await world.command(ALICE, "pause", options={"days": 0})
            assert "Sorry, `0d` is no time away" in none.text

            def away_until(session: Session) -> object:
                return session.exec(
                    select(Enrolment.away_until)
                    .join(Learner, Learner.id == Enrolment.learner_id)  # type: ignore[arg-type]
                    .where(Learner.user_id == str(ALICE))
                ).one()

            assert str(world.app.store.run(away_until)) == "2026-12-04"
            assert "Phase: away until" in (await world.command(ALICE, "progress")).text
            resumed = await world.command(ALICE, "resume")
            assert resumed.text.startswith("Welcome back!")
            paused = await world.command(ALICE, "pause")
            assert paused.text.startswith("Paused.")

            wrong = await world.command(
                DAVE, "settings", options={"setting": "holidays", "value": "DX"}
            )
            assert "unknown holiday calendar 'DX'" in wrong.text
            assert "did you mean DE, DJ or DK?" in wrong.text
            saved = await world.command(
                DAVE, "settings", options={"setting": "holidays", "value": "DE-BY"}
            )
            assert "DE-BY (Germany, Bayern)" in saved.text

            def holidays(session: Session) -> object:
                return session.exec(
                    select(Workspace.holidays).where(Workspace.platform == "discord")
                ).first()

            assert world.app.store.run(holidays) == "DE-BY"

    run(scenario)
