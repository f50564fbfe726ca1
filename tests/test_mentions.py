"""When adapters look mentioned users up (``bot.mentions``) and how long they remember
the answers (``adapters.cache``)."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from adapters.cache import TTLCache
from bot.mentions import has_lead_role, takes_people
from bot.models import Learner, Workspace
from mentorbot.bootstrap import App


def test_only_lead_commands_take_people_and_only_the_first_word_is_read() -> None:
    for text in ("assign <@U1>", "/mentor unassign <@U1>", "  LEADS add <@U1>", "replies <@U1>"):
        assert takes_people(text), text
    for text in ("start <@U1>", "/mentor share", "", "/mentor", "assignment <@U1>", "/mentorx"):
        assert not takes_people(text), text
    assert takes_people("assign " + "<@U1> " * 100_000)


def test_a_stored_lead_role_counts_in_its_workspace_or_in_any_for_a_dm(app: App) -> None:
    def add(session: Session) -> None:
        acme = Workspace(platform="discord", external_id="acme", name="Acme")
        other = Workspace(platform="slack", external_id="acme", name="Acme on Slack")
        session.add_all([acme, other])
        session.flush()
        session.add(Learner(workspace_id=acme.id or 0, user_id="u1", role="lead"))
        session.add(Learner(workspace_id=acme.id or 0, user_id="u2"))
        session.add(Learner(workspace_id=other.id or 0, user_id="u3", role="lead"))

    app.store.run(add)

    def lead(platform: str, workspace: str, user: str) -> bool:
        return app.store.run(lambda s: has_lead_role(s, platform, workspace, user))

    assert lead("discord", "acme", "u1") and lead("discord", "", "u1")
    assert not lead("discord", "globex", "u1")
    assert not lead("discord", "acme", "u2") and not lead("discord", "", "u3")
    assert lead("slack", "acme", "u3") and not lead("slack", "acme", "u1")


def test_the_cache_forgets_entries_when_they_age_and_when_it_is_full() -> None:
    now = [0.0]
    cache: TTLCache[str, int | None] = TTLCache(limit=2, ttl=10, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("gone", None)  # a remembered "no such user"
    assert cache.get("a") == 1 and "gone" in cache and cache.get("gone") is None
    assert "never" not in cache and cache.get("never") is None

    now[0] = 5
    cache.put("b", 2)  # full: the oldest entry goes
    assert "a" not in cache and "gone" in cache and len(cache) == 2
    now[0] = 10  # "gone" was stored at 0: ten seconds on it is forgotten
    assert "gone" not in cache and cache.get("b") == 2 and len(cache) == 1
    now[0] = 15
    assert cache.get("b") is None and len(cache) == 0

    with pytest.raises(ValueError):
        TTLCache(limit=0, ttl=1)
