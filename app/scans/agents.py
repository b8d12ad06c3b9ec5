"""Who sent a request, from its User-Agent: a person's browser, a machine, or nobody we can name.

One verdict per user-agent string, the same wherever it is asked: the gateway asks before it counts a use
of a capped link, the scans worker when it stores a scan, `qrflow scans reclassify` when the lists improve.
Each process caches the verdicts of the strings it saw last (real traffic repeats a few), so a repeat costs
a dictionary lookup and a string not seen before ~95 µs (measured in-process, bench/results/redirect.md).

- bot: a crawler, a link-preview fetcher (a chat app unfurling a pasted link), an HTTP library, a headless
  browser, or no user agent at all. Two community-kept pattern lists decide: crawler-user-agents
  (monperrus) and CrawlerDetect (JayBizzle, as the `crawlerdetect` package ships it); each alone missed
  half or a seventh of the other's public test user agents (docs/api.md, Analytics). Both are matched by
  ua-parser's Rust engine (a Python `re` over ~3,000 patterns took 2 ms a string), plus ua-parser's own
  "Spider" device.
- unknown: names no browser, OS or device that ua-parser knows, and no crawler (`=HYPERLINK(...)`, a
  random token): counted apart, neither a person nor a bot.
- person: everything else; browser, OS and device type come from ua-parser.
"""

from __future__ import annotations

import functools
import re
from typing import Literal, NamedTuple

import crawleruseragents
from crawlerdetect.providers.crawlers import data as crawlerdetect_patterns
from crawlerdetect.providers.exclusions import data as crawlerdetect_exclusions
from ua_parser import OS, Device, Parser, UserAgent, load_lazy_builtins
from ua_parser.regex import (
    Resolver,  # ua-parser[regex]'s Rust engine: ~30x faster than the pure-Python one
)
from ua_parser_rs import DeviceExtractor

AgentClass = Literal["person", "bot", "unknown"]
AGENT_CLASSES: tuple[AgentClass, ...] = ("person", "bot", "unknown")

# Real user agents are under ~500 characters; a longer one is noise or an attack, and cutting it keeps
# both the regex work and the cache's memory bounded.
MAX_USER_AGENT = 1024

# Our own rules, only where the lists are wrong for us. In-app browsers carry their app's name after the
# browser's own tokens, and both lists take that name for the app's link-preview fetcher: a person opening
# a link inside WhatsApp ("... Mobile Safari/537.36 WhatsApp/2.23.24.76") or Slack's desktop app
# ("... Slack/4.36.140 ... Sonic Slack_SSB/4.36.140") is no bot. The fetchers send the name first
# ("WhatsApp/2.23.20.0 A", "Slackbot-LinkExpanding 1.0"), so these tokens are dropped only from a user
# agent that starts as a browser's does, and the lists then judge the rest.
_BROWSER_START = "Mozilla/5.0 ("
_IN_APP_TOKENS = re.compile(r" (?:WhatsApp/[\d.]+\w?|Slack/[\d.]+|Sonic(?= Slack_SSB/)|Slack_SSB/[\d.]+)")

# TVs and consoles go before the phone/tablet/desktop rules: an Android TV has no "Mobile" (it would be
# a tablet), a Fire TV ("; AFTMM") has it, and an Xbox says "Windows".
_TV_OR_CONSOLE_MARKERS = (
    "android tv", "smart-tv", "smarttv", "googletv", "appletv", "crkey", "roku", "hbbtv", "web0s",
    "bravia", "; aft", "playstation", "xbox", "nintendo",
)
_TABLET_DEVICES = frozenset({"iPad", "Kindle", "Generic Tablet"})
_TABLET_BRAND = "Generic_Android_Tablet"  # ua-parser's brand for the Android tablet models it knows
_MOBILE_OS = frozenset({"iOS", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Symbian OS"})
_DESKTOP_OS = frozenset(
    {"Windows", "Mac OS X", "Chrome OS", "Linux", "Ubuntu", "Debian", "Fedora", "Linux Mint",
     "Arch Linux", "openSUSE", "Red Hat", "CentOS", "FreeBSD", "OpenBSD", "NetBSD"}
)
# What Rust's regex engine lacks (look-around, back-references): such patterns go to Python's `re`.
_NOT_FOR_RUST = re.compile(r"\(\?<?[=!]|\\[1-9]")


class Agent(NamedTuple):
    agent_class: AgentClass
    browser: str | None  # ua-parser's user-agent family, e.g. "Mobile Safari"
    os: str | None  # ua-parser's OS family, e.g. "iOS"
    device: str  # "mobile", "tablet", "desktop" or "other" (TVs, consoles, bots, unknown)

    @property
    def is_bot(self) -> bool:
        return self.agent_class == "bot"

    @property
    def is_person(self) -> bool:
        return self.agent_class == "person"


NO_AGENT = Agent("bot", None, None, "other")


class _PatternList:
    """One list's regular expressions, any of which marks a crawler: Rust for those it compiles, `re` else."""

    def __init__(self, patterns: list[str], ignore_case: bool) -> None:
        rust = [p for p in patterns if not _NOT_FOR_RUST.search(p)]
        python = [p for p in patterns if _NOT_FOR_RUST.search(p)]
        flag = "i" if ignore_case else None
        self._rust = DeviceExtractor([(pattern, flag, "Spider", None, None) for pattern in rust])
        self._python = re.compile("|".join(python), re.IGNORECASE if ignore_case else 0) if python else None

    def search(self, user_agent: str) -> bool:
        return self._rust.extract(user_agent) is not None or bool(self._python and self._python.search(user_agent))


class _Lists:
    def __init__(self) -> None:
        # crawler-user-agents' patterns are case-sensitive (its own is_crawler's default); CrawlerDetect's not.
        self.crawler_user_agents = _PatternList(
            [entry["pattern"] for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA], ignore_case=False
        )
        self.crawlerdetect = _PatternList(list(crawlerdetect_patterns), ignore_case=True)
        self.crawlerdetect_exclusions = re.compile("|".join(crawlerdetect_exclusions), re.IGNORECASE)
        # No cache of ua-parser's own: classify caches the whole verdict, which is what repeats.
        self.parser = Parser(Resolver(load_lazy_builtins()))

    def is_crawler(self, user_agent: str) -> bool:
        if self.crawler_user_agents.search(user_agent):
            return True
        # CrawlerDetect first removes what every browser says ("Mozilla/5.0", "Safari/537.36", …) and looks
        # for crawlers in the rest. Removing text rarely creates a match, so the cheap test on the whole
        # string goes first and the removal (in `re`, ~100 µs) runs only to confirm one.
        if not self.crawlerdetect.search(user_agent):
            return False
        rest = self.crawlerdetect_exclusions.sub("", user_agent)
        return bool(rest.strip()) and self.crawlerdetect.search(rest)


@functools.cache
def _lists() -> _Lists:
    return _Lists()


def load() -> None:
    """Compile the lists and ua-parser's rules (~1.5 s) now, rather than on the first request or scan."""
    _lists()


def classify(user_agent: str | None) -> Agent:
    """The verdict on a User-Agent header (None or blank: no user agent, a bot)."""
    if not user_agent or not user_agent.strip():
        return NO_AGENT
    return _classify(user_agent[:MAX_USER_AGENT])


@functools.lru_cache(maxsize=8192)
def _classify(user_agent: str) -> Agent:
    # Lone surrogates (a client's broken encoding) cannot cross into Rust.
    user_agent = user_agent.encode("utf-8", "replace").decode("utf-8")
    lists = _lists()
    result = lists.parser.parse(user_agent)
    browser, os, device = _family(result.user_agent), _family(result.os), result.device
    judged = _IN_APP_TOKENS.sub("", user_agent) if user_agent.startswith(_BROWSER_START) else user_agent
    if (device is not None and device.family == "Spider") or lists.is_crawler(judged):
        return Agent("bot", browser, os, "other")
    if browser is None and os is None and (device is None or device.family in ("", "Other")):
        return Agent("unknown", None, None, "other")
    return Agent("person", browser, os, _device_kind(user_agent, os, device))


def _device_kind(user_agent: str, os: str | None, device: Device | None) -> str:
    lowered = user_agent.lower()
    if any(marker in lowered for marker in _TV_OR_CONSOLE_MARKERS):
        return "other"
    if device is not None and (device.family in _TABLET_DEVICES or device.brand == _TABLET_BRAND):
        return "tablet"
    if os == "Android":
        # Android browsers put "Mobile" in a phone's user agent and leave it out on a tablet.
        return "mobile" if "Mobile" in user_agent else "tablet"
    if os in _MOBILE_OS:
        return "mobile"
    if os in _DESKTOP_OS:
        # An iPad asking for desktop sites says "Macintosh" and lands here: nothing in the string tells.
        return "desktop"
    return "other"


def _family(part: UserAgent | OS | None) -> str | None:
    # "Other" is what ua-parser calls a family that none of its rules names.
    return part.family if part is not None and part.family not in ("", "Other") else None
