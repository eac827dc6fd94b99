"""What a worker can do to a dialog, as typed values the engine takes (goflow's triggers and
resumes). Channels build them from provider requests; the engine never sees a request.

- ``Message``: text the worker typed or keyed (an SMS body, a USSD reply, DTMF digits).
- ``DialIn``: a new dialog begins (a USSD session is opened, a call is answered, or an SMS
  arrives after the pending question was put on another channel). Not an answer: the engine
  offers to resume an unfinished flow, or starts one. ``text`` is what the worker sent to begin
  it (an SMS body; empty on USSD and voice), read only as a keyword.
- ``NoInput``: the worker said nothing before the channel's timeout (voice). ``repeats`` is how
  often the pending question was already asked again for silence in this dialog.
- ``HangUp``: the dialog ended from the worker's side (hang-up, USSD session closed). Answers
  given are kept; the session stays for a later resume.
- ``StarKey``: the caller pressed the star key (voice, at any question): the service's own menu
  to stop (as STOP does) or to erase (as DELETE does), the pending question kept aside.
- ``ResumeChoice``: the worker's choice on the resume screen (``Message`` replies to that screen
  are read into one by the engine).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    text: str


@dataclass(frozen=True)
class DialIn:
    text: str = ""


@dataclass(frozen=True)
class NoInput:
    repeats: int = 0


@dataclass(frozen=True)
class HangUp:
    pass


@dataclass(frozen=True)
class StarKey:
    pass


@dataclass(frozen=True)
class ResumeChoice:
    proceed: bool  # True: continue at the first unanswered question; False: start again


Input = Message | DialIn | NoInput | HangUp | ResumeChoice | StarKey
