"""POST /webhooks/twilio/sms: Twilio Messaging, SMS and WhatsApp (PROVIDERS.md §1, §3, §8)."""

from __future__ import annotations

import pytest

from ..leaks import db_dump, find_number, redis_dump
from ..support import PUBLIC_URL, post_twilio
from .harness import (
    TWILIO,
    Case,
    Recorded,
    answers,
    checks,
    enrolled,
    forgotten,
    no_session,
    one_session,
    run_case,
    started,
)

BD = "+8801711283946"  # the worker most cases are about
SID = "SM0c9f1e2d3b4a59687a6b5c4d3e2f1a0b"


def sms(sender: str = BD, body: str = "hello", sid: str = SID, **extra: str) -> dict[str, str]:
    """An inbound SMS in the captured shape of PROVIDERS.md §1.1."""
    form = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "FromCountry": "BD",
        "To": "+14152001331",
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "ACe24e29bdbc2e7664b315d7629ed3b9d9",
        "From": sender,
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def whatsapp(number: str = BD, body: str = "hello", sid: str = SID, **extra: str) -> dict:
    """An inbound WhatsApp message in the captured shape of PROVIDERS.md §1.1."""
    form = {
        "NumMedia": "0",
        "ProfileName": "Jhonata",
        "WaId": number.lstrip("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": "whatsapp:+14155238886",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": "ACe24e29bdbc2e7664b315d7629ed3b9d9",
        "From": f"whatsapp:{number}",
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


# A WhatsApp user who hides their number behind a username: Meta's business-scoped user id
# (BSUID: a country code, a dot, letters and digits; a parent id has ENT between), which Twilio
# sends as From=whatsapp:<id> and ExternalUserId=<id>, with no WaId.
BSUID = "US.13491208655302741918"
PARENT_BSUID = "US.ENT.11815799212886844830"
MMS_SID = "MM" + "0c9f1e2d3b4a59687a6b5c4d3e2f1a0b"
MEDIA = {
    "NumMedia": "1",
    "MediaContentType0": "image/jpeg",
    "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
}


def username_whatsapp(user_id: str = BSUID, body: str = "hello", sid: str = SID, **extra: str):
    """A WhatsApp message from a user whose number WhatsApp withholds."""
    form = without(whatsapp(BD, body, sid), "WaId")
    form.update({"From": f"whatsapp:{user_id}", "ExternalUserId": user_id, **extra})
    return form


def photo(form: dict[str, str]) -> dict[str, str]:
    """The message as a picture without text: media fields and no Body field at all."""
    return without({**form, **MEDIA}, "Body")


def without(form: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in names}


CAPTURED_SMS = {  # PROVIDERS.md §1.1, as captured
    "ToCountry": "US",
    "ToState": "CA",
    "SmsMessageSid": "SM5ab7891328b440f04b7c83b459fc85fd",
    "NumMedia": "0",
    "ToCity": "SAN FRANCISCO",
    "FromZip": "30512",
    "SmsSid": "SM5ab7891328b440f04b7c83b459fc85fd",
    "FromState": "GA",
    "SmsStatus": "received",
    "FromCity": "BLAIRSVILLE",
    "Body": "42",
    "FromCountry": "US",
    "To": "+14152001331",
    "ToZip": "94105",
    "NumSegments": "1",
    "MessageSid": "SM5ab7891328b440f04b7c83b459fc85fd",
    "AccountSid": "ACe24e29bdbc2e7664b315d7629ed3b9d9",
    "From": "+17067815146",
    "ApiVersion": "2010-04-01",
}
CAPTURED_WHATSAPP = {  # PROVIDERS.md §1.1, as captured
    "NumMedia": "0",
    "ProfileName": "Jhonata",
    "WaId": "558282136275",
    "SmsStatus": "received",
    "Body": "Olá",
    "To": "whatsapp:+14155238886",
    "NumSegments": "1",
    "ReferralNumMedia": "0",
    "MessageSid": "SM01cd3925943ee3504f8a5c42d88efdf6",
    "AccountSid": "ACe24e29bdbc2e7664b315d7629ed3b9d9",
    "From": "whatsapp:+558282136275",
    "ApiVersion": "2010-04-01",
}
WELCOME_EN = "Welcome to WorkerVoice. Choose your language."
WELCOME_BN = "WorkerVoice-এ স্বাগতম"
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'
NOT_SIGNED = "invalid Twilio signature"


def nowhere(text: str):
    """The text is kept nowhere in Redis (a WhatsApp profile name is personal data)."""

    def check(run) -> None:
        assert text.encode() not in repr(redis_dump(run.services.redis)).encode()

    return check


def kept_nowhere(text: str):
    """The text is nowhere: not in Redis, the database, a log record or an answer."""

    def check(run) -> None:
        for where, haystack in (
            ("redis", redis_dump(run.services.redis)),
            ("database", db_dump(run.services)),
            ("logs", run.records),
            ("answers", [r.get_data() for r in run.responses]),
        ):
            assert text not in repr(haystack), f"{text!r} is in {where}"

    return check


def user_id_session(user_id: str):
    """Exactly one worker is in conversation: the one the business-scoped id names."""

    def check(run) -> None:
        assert run.sessions() == [run.services.identity.pseudonymise(f"whatsapp:{user_id}").value]

    return check


def started_as(form: dict[str, str]):
    """The same sender sent this message first (another MessageSid)."""

    def before(run) -> None:
        first = {**form, "MessageSid": "SM" + "e" * 32}
        assert post_twilio(run.client, first).status_code == 200

    return before


def still_enrolled(run) -> None:
    assert run.profile_exists()


def whatsapp_and_sms_are_one_worker(run) -> None:
    """The session the SMS started is the one the WhatsApp message continued."""
    assert run.sessions() == [run.pseudonym(BD)] == [run.pseudonym(f"whatsapp:{BD}")]


def no_message(run) -> None:
    for response in run.responses:
        assert b"<Message" not in response.get_data()


CASES = [
    # -- accepted: real payload shapes ---------------------------------------------------------
    Case(
        "SMS as captured",
        CAPTURED_SMS,
        body=WELCOME_EN,
        check=one_session,
        recorded=Recorded("+17067815146", "42", "SM5ab7891328b440f04b7c83b459fc85fd"),
    ),
    Case(
        "WhatsApp as captured",
        CAPTURED_WHATSAPP,
        body="Choose your language",
        recorded=Recorded("whatsapp:+558282136275", "Olá", "SM01cd3925943ee3504f8a5c42d88efdf6"),
        check=checks(one_session, nowhere("Jhonata")),
    ),
    Case(
        "unknown parameters are accepted and signed over",
        sms(
            FutureParameter="x",
            ChannelMetadata='{"type":"whatsapp"}',
            ButtonPayload="yes",
            Latitude="23.8103",
            OriginalRepliedMessageSid="SM" + "9" * 32,
            OptOutType="",
        ),
        body=WELCOME_BN,
        recorded=Recorded(BD, "hello", SID),
        check=one_session,
    ),
    Case(
        "Bangla body",
        sms(body="হ্যালো, আমি কাজ করি"),
        body=WELCOME_BN,
        recorded=Recorded(BD, "হ্যালো, আমি কাজ করি", SID),
        check=one_session,
    ),
    Case(
        "empty Body (a picture without text)",
        sms(
            body="",
            NumMedia="1",
            MediaContentType0="image/jpeg",
            MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        ),
        body=WELCOME_BN,
        recorded=Recorded(BD, "", SID),
        check=one_session,
    ),
    Case(
        "From without the plus",
        sms(sender="8801711283946"),
        body=WELCOME_BN,
        recorded=Recorded("8801711283946", "hello", SID),
        check=one_session,
    ),
    Case(
        "the query string is part of the signed URL",
        sms(),
        query="?campaign=poster",
        body=WELCOME_BN,
        recorded=Recorded(BD, "hello", SID),
    ),
    Case(
        "Body of exactly 1,600 characters",
        sms(body="x" * 1600),
        body=WELCOME_BN,
        recorded=Recorded(BD, "x" * 1600, SID),
    ),
    Case(
        "WhatsApp and SMS from one number are one worker",
        whatsapp(BD, "2"),
        before=started(BD),
        body="Do you agree?",
        recorded=Recorded(f"whatsapp:{BD}", "2", SID),
        check=whatsapp_and_sms_are_one_worker,
    ),
    Case(
        "a picture by MMS with no Body field: an empty message",
        photo(sms(sid=MMS_SID)),
        body=WELCOME_BN,
        recorded=Recorded(BD, "", MMS_SID),
        check=one_session,
    ),
    Case(
        "a WhatsApp photo with no Body field: an empty message",
        photo(whatsapp(sid=MMS_SID)),
        body=WELCOME_BN,
        recorded=Recorded(f"whatsapp:{BD}", "", MMS_SID),
        check=one_session,
    ),
    Case(
        "a picture with no Body field mid check-in: the question is asked again",
        photo(sms(sid=MMS_SID)),
        before=enrolled(BD),
        body="Please reply with a number from 1 to",
        recorded=Recorded(BD, "", MMS_SID),
        check=checks(answers(0), still_enrolled),
    ),
    Case(
        "WhatsApp from a username (a business-scoped id, no number)",
        username_whatsapp(),
        body="Choose your language",
        recorded=Recorded(f"whatsapp:{BSUID}", "hello", SID),
        check=checks(
            user_id_session(BSUID), kept_nowhere(BSUID), kept_nowhere("13491208655302741918")
        ),
    ),
    Case(
        "WhatsApp from a parent business-scoped id",
        username_whatsapp(PARENT_BSUID),
        body="Choose your language",
        recorded=Recorded(f"whatsapp:{PARENT_BSUID}", "hello", SID),
        check=checks(user_id_session(PARENT_BSUID), kept_nowhere("11815799212886844830")),
    ),
    Case(
        "a username's second message continues their conversation",
        username_whatsapp(body="English"),
        before=started_as(username_whatsapp()),
        body="Do you agree?",
        recorded=Recorded(f"whatsapp:{BSUID}", "English", SID),
        check=checks(user_id_session(BSUID), kept_nowhere(BSUID)),
    ),
    Case(
        "a username's photo with no Body field",
        photo(username_whatsapp(sid=MMS_SID)),
        body="Choose your language",
        recorded=Recorded(f"whatsapp:{BSUID}", "", MMS_SID),
        check=checks(user_id_session(BSUID), kept_nowhere(BSUID)),
    ),
    # -- retries and opt-out ------------------------------------------------------------------
    Case(
        "a retry is answered again and recorded once",
        sms(body="1"),
        repeat=2,
        before=enrolled(BD),
        body="<Message>",
        recorded=Recorded(BD, "1", SID),
        jobs=("events",),
        check=checks(answers(1), one_session),
    ),
    Case(
        "STOP: empty Response, profile and session forgotten",
        sms(body="STOP"),
        before=enrolled(BD),
        body=EMPTY,
        recorded=Recorded(BD, "STOP", SID),
        jobs=("events",),
        check=checks(forgotten, no_message),
    ),
    Case(
        "STOP retried: empty Response both times, forgotten once",
        sms(body="STOP"),
        repeat=2,
        before=enrolled(BD),
        body=EMPTY,
        recorded=Recorded(BD, "STOP", SID),
        jobs=("events",),
        check=checks(forgotten, no_message),
    ),
    Case(
        "stop in lower case with spaces",
        sms(body="  stop "),
        before=enrolled(BD),
        body=EMPTY,
        recorded=Recorded(BD, "  stop ", SID),
        jobs=("events",),
        check=forgotten,
    ),
    Case(
        "UNSUBSCRIBE (a Twilio opt-out word)",
        sms(body="Unsubscribe"),
        before=enrolled(BD),
        body=EMPTY,
        recorded=Recorded(BD, "Unsubscribe", SID),
        jobs=("events",),
        check=forgotten,
    ),
    Case(
        "STOP over WhatsApp forgets the SMS worker",
        whatsapp(BD, "STOP"),
        before=enrolled(BD),
        body=EMPTY,
        recorded=Recorded(f"whatsapp:{BD}", "STOP", SID),
        jobs=("events",),
        check=forgotten,
    ),
    Case(
        "a custom opt-out keyword (Advanced Opt-Out sets OptOutType)",
        sms(body="ARRET", OptOutType="STOP"),
        before=enrolled(BD),
        body=EMPTY,
        recorded=Recorded(BD, "STOP", SID),
        jobs=("events",),
        check=forgotten,
    ),
    Case(
        "OptOutType HELP is an ordinary message",
        sms(body="HELP", OptOutType="HELP"),
        before=enrolled(BD),
        body="reply with the number of your answer",
        recorded=Recorded(BD, "HELP", SID),
        check=still_enrolled,
    ),
    Case(
        "STOP in Bangla: Twilio neither confirms nor blocks it, so the service confirms",
        sms(body="বন্ধ"),
        before=enrolled(BD),
        body="<Message>",
        recorded=Recorded(BD, "বন্ধ", SID),
        jobs=("events",),
        check=forgotten,
    ),
    Case(
        "STOP from a number never seen",
        sms(body="STOP"),
        body=EMPTY,
        recorded=Recorded(BD, "STOP", SID),
        jobs=("events",),
        check=no_session,
    ),
    # -- malformed: 400, nothing changes ------------------------------------------------------
    Case("missing From", without(sms(), "From"), 400, "missing field 'From'"),
    Case("missing MessageSid", without(sms(), "MessageSid"), 400, "missing field 'MessageSid'"),
    Case("missing Body", without(sms(), "Body"), 400, "missing field 'Body'"),
    Case(
        "missing Body, no media",
        without(sms(NumMedia="0"), "Body"),
        400,
        "missing field 'Body'",
    ),
    Case(
        "missing Body, NumMedia not a number",
        without(sms(NumMedia="one", MediaUrl0=MEDIA["MediaUrl0"]), "Body"),
        400,
        "missing field 'Body'",
    ),
    Case("a business-scoped id over SMS", sms(sender=BSUID), 400, "not a phone number"),
    Case(
        "a business-scoped id without its country",
        username_whatsapp("13491208655302741918x"),
        400,
        "not a phone number",
    ),
    Case("WhatsApp from a dot alone", username_whatsapp("US."), 400, "not a phone number"),
    Case("WhatsApp from an id with a space", username_whatsapp("US.1 2"), 400, "not a phone"),
    Case("WhatsApp from a vanity number", username_whatsapp("+1800FLOWERS"), 400, "phone number"),
    Case(
        "WhatsApp from an id over 128 characters",
        username_whatsapp("US." + "1" * 129),
        400,
        "not a phone number",
    ),
    Case("From 'anonymous'", sms(sender="anonymous"), 400, "not a phone number"),
    Case("From 'abc'", sms(sender="abc"), 400, "not a phone number"),
    Case("From empty", sms(sender=""), 400, "not a phone number"),
    Case("From a voice client", sms(sender="client:alice"), 400, "not a phone number"),
    Case("From a vanity number", sms(sender="+1800FLOWERS"), 400, "not a phone number"),
    Case("From 'whatsapp:' alone", sms(sender="whatsapp:"), 400, "not a phone number"),
    Case("From too short to be a number", sms(sender="+12"), 400, "phone number"),
    Case("From too long to be a number", sms(sender="+123456789012345678"), 400, "phone number"),
    Case(
        "From over 160 characters",
        sms(sender="whatsapp:US." + "1" * 150),
        400,
        "field 'From' is longer than 160 characters",
    ),
    Case("MessageSid empty", sms(sid=""), 400, "empty field 'MessageSid'"),
    Case("MessageSid with a space", sms(sid="SM 1"), 400, "malformed field 'MessageSid'"),
    Case("MessageSid not a Twilio sid", sms(sid="notasid"), 400, "malformed field 'MessageSid'"),
    Case("MessageSid too short", sms(sid="SM" + "a" * 31), 400, "malformed field 'MessageSid'"),
    Case(
        "MessageSid over 64 characters",
        sms(sid="SM" + "a" * 63),
        400,
        "field 'MessageSid' is longer than 64 characters",
    ),
    Case(
        "Body over 1,600 characters",
        sms(body="x" * 1601),
        400,
        "field 'Body' is longer than 1600 characters",
    ),
    Case("Body with a NUL character", sms(body="a\x00b"), 400, "field 'Body' holds a NUL"),
    Case("MessageSid with a NUL character", sms(sid="SM1\x00"), 400, "field 'MessageSid' holds"),
    Case(
        "a JSON body",
        {},
        400,
        "missing field 'From'",
        raw=b'{"From": "+8801711283946"}',
        content_type="application/json",
    ),
    # -- authentication: 403, nothing changes -------------------------------------------------
    Case("no signature", sms(), 403, NOT_SIGNED, signature=None),
    Case("empty signature", sms(), 403, NOT_SIGNED, signature=""),
    Case("wrong signature", sms(), 403, NOT_SIGNED, signature="bm90IGEgc2lnbmF0dXJlIGF0IGFsbA=="),
    Case("signed with another token", sms(), 403, NOT_SIGNED, signing_token="another-token"),
    Case(
        "signed over another URL",
        sms(),
        403,
        NOT_SIGNED,
        signed_url="http://localhost:5000/webhooks/twilio/sms",
    ),
    Case(
        "signed over another path",
        sms(),
        403,
        NOT_SIGNED,
        signed_url=PUBLIC_URL + "/webhooks/twilio/voice",
    ),
    Case(
        "signed without the query string it was sent with",
        sms(),
        403,
        NOT_SIGNED,
        query="?campaign=poster",
        signed_url=PUBLIC_URL + "/webhooks/twilio/sms",
    ),
    Case("form tampered after signing", sms(body="2"), 403, NOT_SIGNED, signed_form=sms(body="1")),
    Case("a parameter added after signing", sms(Extra="1"), 403, NOT_SIGNED, signed_form=sms()),
    Case(
        "a forged STOP changes nothing",
        sms(body="STOP"),
        403,
        NOT_SIGNED,
        signing_token="another-token",
        before=enrolled(BD),
        check=still_enrolled,
    ),
    Case(
        "malformed and unsigned: authentication comes first",
        without(sms(), "From"),
        403,
        NOT_SIGNED,
        signature=None,
    ),
    # -- not a webhook call at all ------------------------------------------------------------
    Case("GET", sms(), 405, "not allowed", method="GET", signature=None),
    Case("PUT", sms(), 405, "not allowed", method="PUT"),
    Case("a body over the size limit", sms(body="x" * 300_000), 413, "exceeds"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_twilio_sms(case, app, client, services, monkeypatch):
    run_case(TWILIO, case, app, client, services, monkeypatch)


def test_case_labels_are_unique():
    assert len({case.label for case in CASES}) == len(CASES)


def test_a_refusal_never_quotes_the_sender(app, client, services, monkeypatch):
    """Even a 400 about the sender's address does not echo it back."""
    run = run_case(
        TWILIO,
        Case("bad From", sms(sender="+12 345"), 400, "phone number"),
        app,
        client,
        services,
        monkeypatch,
    )
    assert "345" not in run.responses[0].get_data(as_text=True)
    assert not find_number(BD, run.responses[0].get_data())
