"""The unit of work one incoming event runs in, and the states an enrolment can be in."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from bot.messages import IncomingEvent, OutgoingMessage
from bot.models import Enrolment, Learner, Workspace

ACTIVE = "active"
PAUSED = "paused"
AWAITING_CONTINUE = "awaiting_continue"
WAITING_CONTENT = "waiting_content"
STOPPED = "stopped"
CURRENT_STATES = (ACTIVE, PAUSED, AWAITING_CONTINUE, WAITING_CONTENT)
QUESTION_KINDS = ("lesson", "practice", "review")


def resting(enrolment: Enrolment) -> bool:
    """Paused, away or stopped (a lead's ``unassign``, another course started): nothing
    the bot starts (reminders, check-ins, prompts) may reach the learner.

    Away is a pause that ends by itself (``away_until``, see ``MentorService.go_away``).
    The learner's own actions while away (answering a lesson's last question, going on
    to the next lesson) may move the status on from paused, as they do during a pause;
    the away period still holds until its end, so it is checked on its own."""
    return enrolment.status in (PAUSED, STOPPED) or enrolment.away_until is not None


@dataclass
class Context:
    """The learner an event is about, loaded once per unit of work."""

    session: Session
    event: IncomingEvent
    workspace: Workspace
    learner: Learner

    def answer(self, text: str, **extra: object) -> OutgoingMessage:
        """A message back to whoever sent the event, where they sent it."""
        return OutgoingMessage(
            platform=self.event.platform,
            workspace=self.event.workspace,
            user=self.event.user,
            text=text,
            ephemeral=True,
            **extra,  # type: ignore[arg-type]
        )

    @property
    def is_lead(self) -> bool:
        """Leads are read from the platform on each event, or added with ``leads add``."""
        return self.learner.role == "lead" or self.event.platform_is_lead
