"""The dashboard: its cards and the summary strip's tiles."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from engine.monitoring import MonitoringView, monitoring_last_run, monitoring_status
from pages import selectors
from pages.presenters.cards import ConnectionView, ProfileCache, present_connection, recent_checks_attach
from pages.presenters.phrases import GROUPS
from pages.presenters.status import StatusView, status_for


@dataclass
class SummaryTile:
    group: str
    label: str
    count: int
    selected: bool = False


@dataclass
class Summary:
    counts: dict = field(default_factory=dict)
    total: int = 0
    selected: str = ""

    @property
    def tiles(self) -> list[SummaryTile]:
        return [SummaryTile(g, label, self.counts.get(g, 0), self.selected == g) for g, label in GROUPS]

    def __getattr__(self, name):
        # summary.working, summary.needs_you, ... in templates and tests
        counts = self.__dict__.get("counts", {})
        if name in dict(GROUPS):
            return counts.get(name, 0)
        raise AttributeError(name)


def summary_for(states: list[StatusView], *, selected: str = "") -> Summary:
    """Counts per group of the connections shown (disconnected ones are not on the dashboard):
    the tiles add up to the list."""
    summary = Summary(selected=selected if selected in dict(GROUPS) else "")
    for state in states:
        if state.group == "disconnected":
            continue
        summary.total += 1
        summary.counts[state.group] = summary.counts.get(state.group, 0) + 1
    return summary


@dataclass
class Dashboard:
    cards: list[ConnectionView]
    summary: Summary
    monitoring: MonitoringView
    now: datetime = field(default_factory=timezone.now)
    shown: list[ConnectionView] = field(default_factory=list)


def dashboard_for_user(*, user, now: datetime | None = None, show: str = "") -> Dashboard:
    """Everything the dashboard shows, in a fixed number of queries whatever the number of
    connections. `show` is a summary group: only those cards are listed (the tiles filter)."""
    now = now or timezone.now()
    connections = list(selectors.connection_list_for_user(user=user).select_related("check_log"))
    recent_checks_attach(connections)
    profiles = ProfileCache()
    last_sweep = monitoring_last_run()
    cards = [
        present_connection(c, checks=c.recent_checks, now=now, profiles=profiles, last_sweep=last_sweep)
        for c in connections
    ]
    summary = summary_for([c.state for c in cards], selected=show)
    shown = [c for c in cards if not summary.selected or c.state.group == summary.selected]
    return Dashboard(
        cards=shown, summary=summary, monitoring=monitoring_status(now=now, last=last_sweep), now=now, shown=shown
    )


def summary_for_user(*, user, now: datetime | None = None, show: str = "") -> Summary:
    now = now or timezone.now()
    profiles = ProfileCache()
    last_sweep = monitoring_last_run()
    states = [
        status_for(c, profile=profiles[c.broker_slug], now=now, last_sweep=last_sweep)
        for c in selectors.connection_list_for_user(user=user)
    ]
    return summary_for(states, selected=show)
