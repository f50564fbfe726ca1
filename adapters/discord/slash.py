"""The ``/mentor`` slash command group: one subcommand per command of the core grammar.

Each subcommand only turns its typed options back into the core's command text
(``schedule 08:30 mon,wed Europe/Berlin``) and hands it on; whether the values make
sense is for the core to say, so a wrong time or zone gets the same answer as on
every other platform. Options offer autocomplete where Discord can help typing.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Literal, Protocol
from zoneinfo import available_timezones

import discord
from discord import app_commands

Choice = app_commands.Choice
MAX_CHOICES = 25  # Discord's limit per autocomplete answer
CHOICE_LIMIT = 100  # characters in a choice's name and value

# Discord allows 25 subcommands in a group, and the core has more commands than that. A
# command past the limit rides on the options of a related subcommand: the core command
# it becomes, and the subcommand that carries it.
FOLDED = {"away": "pause"}

COMMON_DAYS = ("weekdays", "daily", "weekends", "mon,wed,fri", "tue,thu")
_USER_MENTION = re.compile(r"(<@!?\d+>)")


class CommandRunner(Protocol):
    """What the group needs from the adapter."""

    async def run_command(self, interaction: discord.Interaction, words: Sequence[str]) -> None: ...

    def course_choices(self) -> Sequence[tuple[str, str]]: ...


def command_text(words: Iterable[Any]) -> str:
    """The core command line for ``words``: empty options dropped, values quoted when
    they hold spaces (the core splits with shlex)."""
    out: list[str] = []
    for word in words:
        if word is None or word == "":
            continue
        if isinstance(word, float):
            word = f"{word:g}"
        text = str(word).strip()
        if text:
            out.append(text if shlex.quote(text) == text else shlex.quote(text))
    return " ".join(out)


def people_words(text: str | None) -> list[str]:
    """The words of a ``people`` option, one per mention.

    Picking several people from Discord's list can leave them without spaces between
    (``<@1><@2>``), and people type commas (``@ana, @ben``); either would otherwise reach
    the core as one unreadable word, taken for a course name.
    """
    spaced = _USER_MENTION.sub(r" \1 ", text or "")
    return [word for word in re.split(r"[\s,]+", spaced) if word]


@lru_cache(maxsize=1)
def _zones() -> tuple[str, ...]:
    """IANA zones a learner would pick: Area/Location names, plus UTC.

    Legacy aliases without a slash (``Japan``, ``EST``) are left out: the core reads an
    argument with a slash as a time zone and anything else as days.
    """
    skip = ("Etc/", "SystemV/", "posix/", "right/", "US/", "Canada/", "Brazil/", "Chile/")
    names = {z for z in available_timezones() if "/" in z and not z.startswith(skip)}
    return ("UTC", *sorted(names))


def zone_choices(current: str) -> list[Choice[str]]:
    """Zones matching what was typed: name or city prefix first, then any substring."""
    typed = current.strip().replace(" ", "_").lower()
    zones = _zones()
    if not typed:
        picked = list(zones[:MAX_CHOICES])
    else:
        starts = [
            z
            for z in zones
            if z.lower().startswith(typed) or z.lower().split("/")[-1].startswith(typed)
        ]
        contains = [z for z in zones if typed in z.lower() and z not in starts]
        picked = (starts + contains)[:MAX_CHOICES]
    return [Choice(name=z, value=z) for z in picked]


def time_choices(current: str) -> list[Choice[str]]:
    """Half-hour slots matching what was typed; the typed value itself comes first so a
    time like 08:45 can still be chosen."""
    typed = current.strip()
    slots = [f"{h:02d}:{m:02d}" for h in range(24) for m in (0, 30)]
    if not typed:
        picked = [s for s in slots if "06:00" <= s <= "18:00"]
    else:
        picked = [s for s in slots if s.startswith(typed) or s.lstrip("0").startswith(typed)]
        if typed not in picked:
            picked.insert(0, typed[:CHOICE_LIMIT])
    return [Choice(name=s, value=s) for s in picked[:MAX_CHOICES]]


def day_choices(current: str) -> list[Choice[str]]:
    typed = current.strip().lower()
    picked = [d for d in COMMON_DAYS if d.startswith(typed)]
    if typed and typed not in picked:
        picked.insert(0, typed[:CHOICE_LIMIT])
    return [Choice(name=d, value=d) for d in picked[:MAX_CHOICES]]


def holiday_choices(current: str) -> list[Choice[str]]:
    """Holiday calendars for what was typed: the last code of a list is completed, the
    ones before it kept (``DE, US-C`` offers ``DE, US-CA`` …); ``off`` clears them."""
    from bot.schedule import holiday_codes

    head, _, last = current.rpartition(",")
    typed = last.strip().upper()
    kept = f"{head.strip()}, " if head.strip() else ""
    picked = sorted((c for c in holiday_codes() if c.upper().startswith(typed)), key=len)
    if not kept and "OFF".startswith(typed):
        picked.insert(0, "off")
    return [
        Choice(name=(kept + c)[:CHOICE_LIMIT], value=(kept + c)[:CHOICE_LIMIT])
        for c in picked[:MAX_CHOICES]
    ]


def course_choices(courses: Sequence[tuple[str, str]], current: str) -> list[Choice[str]]:
    typed = current.strip().lower()
    out = []
    for course_id, title in courses:
        if typed in course_id.lower() or typed in title.lower():
            name = f"{title} ({course_id})" if title and title != course_id else course_id
            out.append(Choice(name=name[:CHOICE_LIMIT], value=course_id[:CHOICE_LIMIT]))
    return out[:MAX_CHOICES]


class MentorGroup(app_commands.Group):
    """``/mentor <subcommand>``; subcommands mirror ``bot.commands.SPECS``."""

    def __init__(self, runner: CommandRunner) -> None:
        super().__init__(
            name="mentor", description="Your mentoring course: lessons, answers and schedule"
        )
        self.runner = runner

    async def _run(self, interaction: discord.Interaction, *words: Any) -> None:
        await self.runner.run_command(interaction, [str(w) if w is not None else "" for w in words])

    @app_commands.command(name="help", description="What mentorbot does and every command")
    async def help_(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "help")

    @app_commands.command(name="courses", description="The courses you can take")
    async def courses(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "courses")

    @app_commands.command(name="start", description="Enrol in a course and get day 1 now")
    @app_commands.describe(course="The course to take (default: the first one)")
    async def start(self, interaction: discord.Interaction, course: str | None = None) -> None:
        await self._run(interaction, "start", course)

    @start.autocomplete("course")
    async def _course_complete(
        self, interaction: discord.Interaction, current: str
    ) -> list[Choice[str]]:
        return course_choices(self.runner.course_choices(), current)

    @app_commands.command(name="next", description="Get the next lesson-day now")
    async def next_(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "next")

    @app_commands.command(name="skip", description="Skip the open question")
    @app_commands.describe(question="The question's number from /mentor open (default: newest)")
    async def skip(self, interaction: discord.Interaction, question: int | None = None) -> None:
        await self._run(interaction, "skip", question)

    @app_commands.command(name="open", description="Your open questions, numbered")
    async def open_(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "open")

    @app_commands.command(name="answer", description="Answer one open question by its number")
    @app_commands.describe(question="The number from /mentor open", text="Your answer")
    async def answer(self, interaction: discord.Interaction, question: int, text: str) -> None:
        await self._run(interaction, "answer", question, text)

    @app_commands.command(name="snooze", description="Remind me about the open question later")
    @app_commands.describe(hours="In how many hours (default 2)")
    async def snooze(self, interaction: discord.Interaction, hours: float | None = None) -> None:
        await self._run(interaction, "snooze", None if hours is None else f"{hours:g}")

    @app_commands.command(name="schedule", description="Show or set when lessons arrive")
    @app_commands.describe(
        time="Local time, 24-hour HH:MM, e.g. 08:30",
        days="weekdays, daily, weekends or days like mon,wed,fri",
        timezone="Your time zone, e.g. Europe/Berlin",
    )
    async def schedule(
        self,
        interaction: discord.Interaction,
        time: str | None = None,
        days: str | None = None,
        timezone: str | None = None,
    ) -> None:
        await self._run(interaction, "schedule", time, days, timezone)

    @schedule.autocomplete("time")
    async def _time_complete(
        self, interaction: discord.Interaction, current: str
    ) -> list[Choice[str]]:
        return time_choices(current)

    @schedule.autocomplete("days")
    async def _days_complete(
        self, interaction: discord.Interaction, current: str
    ) -> list[Choice[str]]:
        return day_choices(current)

    @schedule.autocomplete("timezone")
    async def _zone_complete(
        self, interaction: discord.Interaction, current: str
    ) -> list[Choice[str]]:
        return zone_choices(current)

    @app_commands.command(
        name="pause",
        description="Stop deliveries; with days, weeks or until, I resume by myself (away)",
    )
    @app_commands.describe(
        days="Away this many days, today included; I come back by myself",
        weeks="Away this many weeks",
        until="Away through this day, YYYY-MM-DD",
    )
    async def pause(
        self,
        interaction: discord.Interaction,
        days: int | None = None,
        weeks: int | None = None,
        until: str | None = None,
    ) -> None:
        """``/mentor pause`` alone pauses; with a span it is the core's ``away``."""
        if days is None and weeks is None and not until:
            await self._run(interaction, "pause")
            return
        span = f"{days}d" if days is not None else f"{weeks}w" if weeks is not None else None
        await self._run(interaction, "away", span, *(("until", until) if until else ()))

    @app_commands.command(name="resume", description="Start deliveries again")
    async def resume(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "resume")

    @app_commands.command(name="progress", description="Where you are in your course")
    async def progress(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "progress")

    @app_commands.command(name="history", description="The replies you have written")
    async def history(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "history")

    @app_commands.command(name="move", description="File a reply under another question")
    @app_commands.describe(
        reply="The reply's number from /mentor history",
        to="A question's number, or 'note' (leave empty to see the choices)",
    )
    async def move(
        self, interaction: discord.Interaction, reply: int, to: str | None = None
    ) -> None:
        await self._run(interaction, "move", reply, to)

    @app_commands.command(name="share", description="Share your last reply with your leads")
    async def share(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "share")

    @app_commands.command(
        name="export-my-data", description="Get a file of everything stored about you"
    )
    async def export_my_data(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "export-my-data")

    # -------------------------------------------------------------- for leads
    # Shown to everyone (Discord sets permissions per command, not per subcommand);
    # the core answers members who are not leads.

    @app_commands.command(name="assign", description="Leads: enrol people and welcome them")
    @app_commands.describe(
        people="Mention them (pick from the list): @ana @ben",
        course="The course (default: the workspace's)",
    )
    async def assign(
        self, interaction: discord.Interaction, people: str, course: str | None = None
    ) -> None:
        await self._run(interaction, "assign", *people_words(people), course)

    @assign.autocomplete("course")
    async def _assign_course_complete(
        self, interaction: discord.Interaction, current: str
    ) -> list[Choice[str]]:
        return course_choices(self.runner.course_choices(), current)

    @app_commands.command(name="unassign", description="Leads: stop people's deliveries")
    @app_commands.describe(people="Mention them (pick from the list): @ana @ben")
    async def unassign(self, interaction: discord.Interaction, people: str) -> None:
        await self._run(interaction, "unassign", *people_words(people))

    @app_commands.command(name="team", description="Leads: everyone's progress")
    async def team(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "team")

    @app_commands.command(name="replies", description="Leads: replies shared with leads")
    @app_commands.describe(
        person="Only this person's replies", lesson="Only this lesson, e.g. 0.2.2"
    )
    async def replies(
        self,
        interaction: discord.Interaction,
        person: discord.User | None = None,
        lesson: str | None = None,
    ) -> None:
        who = f"<@{person.id}>" if person is not None else None
        await self._run(interaction, "replies", who, lesson)

    @app_commands.command(name="digest", description="Leads: a scheduled summary in a channel")
    @app_commands.describe(channel="Where to post it", frequency="How often (off: stop it)")
    async def digest(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel,
        frequency: Literal["weekly", "daily", "off"],
    ) -> None:
        await self._run(interaction, "digest", f"<#{channel.id}>", frequency)

    @app_commands.command(name="settings", description="Leads: show or change workspace defaults")
    @app_commands.describe(
        setting="What to change (leave empty to see them all)", value="New value"
    )
    async def settings(
        self,
        interaction: discord.Interaction,
        setting: Literal[
            "timezone", "time", "days", "holidays", "visibility", "auto-enrol", "course"
        ]
        | None = None,
        value: str | None = None,
    ) -> None:
        await self._run(interaction, "settings", setting, value)

    @settings.autocomplete("value")
    async def _setting_value_complete(
        self, interaction: discord.Interaction, current: str
    ) -> list[Choice[str]]:
        setting = getattr(interaction.namespace, "setting", None)
        if setting == "timezone":
            return zone_choices(current)
        if setting == "time":
            return time_choices(current)
        if setting == "days":
            return day_choices(current)
        if setting == "course":
            return course_choices(self.runner.course_choices(), current)
        if setting == "holidays":
            return holiday_choices(current)
        options = {"visibility": ("private", "leads"), "auto-enrol": ("on", "off")}
        return [
            Choice(name=o, value=o) for o in options.get(str(setting), ()) if o.startswith(current)
        ]

    @app_commands.command(name="leads", description="Leads: list, add or remove leads")
    @app_commands.describe(action="add or remove (leave empty to list)", people="Mention them")
    async def leads(
        self,
        interaction: discord.Interaction,
        action: Literal["add", "remove"] | None = None,
        people: str | None = None,
    ) -> None:
        await self._run(interaction, "leads", action, *people_words(people))

    @app_commands.command(name="reload", description="Leads: pick up edited lesson files")
    async def reload(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "reload")

    @app_commands.command(name="forget-me", description="Delete all your data (asks to confirm)")
    @app_commands.describe(confirm="Set to True to delete everything now")
    async def forget_me(self, interaction: discord.Interaction, confirm: bool = False) -> None:
        await self._run(interaction, "forget-me", "confirm" if confirm else None)


def raw_command_words(data: Any) -> list[str]:
    """Subcommand names and option values from raw interaction data, in order.

    Used when discord.py cannot match the interaction to the group (a subcommand or
    option Discord still shows from an older sync): the core then answers it like any
    typed command, e.g. with "Unknown command".
    """
    words: list[str] = []

    def walk(options: Any) -> None:
        for option in options or []:
            if not isinstance(option, dict):
                continue
            kind, value = option.get("type"), option.get("value")
            if kind in (1, 2):  # subcommand, subcommand group
                words.append(str(option.get("name", "")))
                walk(option.get("options"))
            elif value is None:
                continue
            elif kind in (6, 9):  # user, mentionable: the core reads mentions
                words.append(f"<@{value}>")
            elif kind == 7:  # channel
                words.append(f"<#{value}>")
            elif kind == 3:  # text: may hold several mentions
                words.extend(str(value).split())
            else:
                words.append(str(value))

    walk((data or {}).get("options"))
    return words
