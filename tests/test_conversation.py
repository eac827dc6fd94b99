"""The channel-neutral handler: what holds across channels and messages."""

from __future__ import annotations

from gateway.sessions import CODE_TRIES_PER_DAY

from .support import (
    SmsWorker,
    add_workplace,
    message_id,
    options,
    post_twilio,
    twilio_sms_form,
    twiml_text,
)

UNKNOWN_CODE = "We do not know that workplace code"
GAVE_UP = "We could not find your workplace"


def start_enrolment(worker: SmsWorker) -> str:
    worker.send("hello")
    worker.send("2")  # English
    return worker.send("1")  # agree


def test_one_number_cannot_walk_through_the_workplace_codes(client, services):
    add_workplace(services, code="4321")
    worker = SmsWorker(client, "+8801711000077")
    tries = 0
    while tries < CODE_TRIES_PER_DAY:
        start_enrolment(worker)
        for _ in range(3):
            reply = worker.send(f"{1000 + tries}")
            tries += 1
        assert GAVE_UP in reply
    start_enrolment(worker)
    assert UNKNOWN_CODE in worker.send("4321")  # the right code, past the allowance


def test_the_allowance_is_per_number(client, services):
    add_workplace(services, code="4321")
    first = SmsWorker(client, "+8801711000077")
    for _ in range(CODE_TRIES_PER_DAY // 3):
        start_enrolment(first)
        for code in ("1111", "2222", "3333"):
            first.send(code)
    other = SmsWorker(client, "+8801711000078")
    start_enrolment(other)
    assert "Thank you, you are enrolled." in other.send("4321")


# -- the reply cache is per sender ------------------------------------------------------------


def send(client, sender: str, body: str, sid: str) -> str:
    response = post_twilio(client, twilio_sms_form(sender, body, sid=sid))
    assert response.status_code == 200, response.get_data(as_text=True)
    return twiml_text(response)


def test_two_senders_reusing_one_message_id_each_get_their_own_reply(client, services):
    """A provider's message id is unique per sender at best: a second sender's message with
    the first one's id is another message, processed and answered for itself."""
    add_workplace(services, code="4321")
    enrolled, new = SmsWorker(client, "+8801711000077"), "+17067815146"
    question = enrolled.enrol()
    sid = message_id()
    answered = send(client, enrolled.phone, "2", sid)  # "No" to the first check-in question
    welcome = send(client, new, "hello", sid)
    assert answered != question and "Choose your language" not in answered
    assert "Welcome to WorkerVoice. Choose your language." in welcome
    # both were processed: each sender has a session, each moved on from their own message
    assert len(services.redis.keys("wv:session:*")) == 2
    assert "Do you agree?" in send(client, new, "English", message_id())
    # and a retry of either is answered from that sender's own cache
    assert send(client, enrolled.phone, "2", sid) == answered
    assert send(client, new, "hello", sid) == welcome


# -- menus take the number or the option's text, never a hidden code --------------------------


def session_of(services, phone: str):
    return services.sessions.load(services.identity.pseudonymise(phone).value)


def test_hello_then_hi_is_not_hindi(client, services):
    """ "hi" is a greeting, not the code of Hindi: the worker is asked for a number and shown
    the same menu; nothing is chosen."""
    worker = SmsWorker(client, "+8801711000079")
    menu = options(worker.send("hello"))
    assert "हिन्दी" in menu
    reply = worker.send("hi")
    assert reply.startswith(f"1 থেকে {len(menu)} পর্যন্ত একটি নম্বর লিখে পাঠান।")  # Bangla
    assert options(reply) == menu
    session = session_of(services, worker.phone)
    assert (session.current, session.profile.language) == ("language", None)
    assert "Do you agree?" in worker.send("English")


def test_an_option_value_is_not_an_answer_unless_it_is_the_options_text(client, services):
    """The consent's options are stored as "agree" and "decline" but read "I agree" and "I do
    not agree": typing a stored value is refused with the question again (a "decline" does not
    end the enrolment); the option's own text, in any case, is taken. (The check-in's "late"
    and "short" are in tests/engine/scenarios/menus_take_no_codes.yaml.)"""
    worker = SmsWorker(client, "+8801711000080")
    worker.send("hello")
    question = worker.send("English")
    for value in ("agree", "decline"):
        refused = worker.send(value)
        assert refused.startswith("Please reply with a number from 1 to 2.")
        assert options(refused) == options(question) == ["I agree", "I do not agree"]
        assert session_of(services, worker.phone).current == "consent"
    assert "Type the code of your workplace" in worker.send("i agree")


def ussd(client, session_id: str, phone: str, text: str) -> str:
    form = {
        "sessionId": session_id,
        "serviceCode": "*384*1234#",
        "phoneNumber": phone,
        "networkCode": "63902",
        "text": text,
    }
    response = client.post("/webhooks/at/ussd?token=test-at-webhook-token", data=form)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def ended(client, session_id: str, phone: str) -> None:
    """Africa's Talking's end-of-session notification: a hang-up."""
    form = {"sessionId": session_id, "phoneNumber": phone, "status": "Success", "input": ""}
    response = client.post("/webhooks/at/ussd/events?token=test-at-webhook-token", data=form)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_hang_up_never_brings_back_a_worker_who_declined_or_left(client, services):
    add_workplace(services, code="4321")
    declined, left = "+254711000401", "+254711000402"
    ussd(client, "ATUid_decline", declined, "")
    ussd(client, "ATUid_decline", declined, "2")  # English
    declined_screen = ussd(client, "ATUid_decline", declined, "2*2")  # do not agree
    # no "send any message" on USSD, where none is sent
    assert declined_screen == (
        "END You did not agree, so nothing about you was kept. You are welcome back at any time."
    )
    ended(client, "ATUid_decline", declined)
    ussd(client, "ATUid_stop", left, "")
    assert ussd(client, "ATUid_stop", left, "STOP").startswith(("END ", "CON "))
    ended(client, "ATUid_stop", left)
    assert services.redis.keys("wv:session:*") == []


def test_a_hang_up_keeps_a_worker_mid_flow(client, services):
    add_workplace(services, code="4321")
    phone = "+254711000403"
    for text in ("", "2", "2*1", "2*1*4321"):
        screen = ussd(client, "ATUid_mid", phone, text)
    assert screen.startswith("CON ")
    ended(client, "ATUid_mid", phone)
    assert len(services.redis.keys("wv:session:*")) == 1
