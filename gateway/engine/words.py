"""The service's own words: every string the service says to a worker that is not in a flow file.

Each constant is a gettext msgid; translations live in the catalog shipped inside the package
(``gateway/locale/<lang>/LC_MESSAGES/service.po``), independent of ``WORKERVOICE_LOCALES_DIR``.
``N_`` only marks a string for ``pybabel extract``; lookup happens through ``Texts.service``.
Placeholders use ``str.format`` names, which translators keep as they are.
"""


def N_(msgid: str) -> str:  # noqa: N802 - gettext marker convention
    return msgid


# Reserved keywords (SPEC §4). Each is matched in English and in the worker's language.
KEYWORD_STOP = N_("STOP")
KEYWORD_HELP = N_("HELP")
KEYWORD_LANG = N_("LANG")
# DELETE: after a confirmation (ERASE_CONFIRM), everything STOP forgets and every answer that can
# still be linked to the worker.
KEYWORD_DELETE = N_("DELETE")
# Twilio's standard opt-out words (PROVIDERS.md §8.1), reserved beside STOP in every language:
# each opts the worker out. Matched as they are (Twilio knows no translations), so not N_ marked.
OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)

HELP = N_(
    "WorkerVoice: reply with the number of your answer. Send LANG to change language, "
    "STOP to leave, DELETE to erase your answers. Your phone number is never stored."
)
STOPPED = N_(
    "You have left WorkerVoice and your details are deleted. Send any message to join again."
)
ERASE_CONFIRM = N_(
    "Erase your details and every answer you gave? This cannot be undone. Any other reply "
    "keeps them."
)
YES = N_("Yes")
NO = N_("No")
ERASED = N_("Your details and all your answers are erased. Send any message to join again.")
ERASE_KEPT = N_("Nothing was erased.")
DECLINED = N_(
    "You did not agree, so nothing about you was kept. Send any message if you change your mind."
)
CHOOSE_NUMBER = N_("Please reply with a number from 1 to {count}.")
NUMBER_RANGE = N_("Please reply with a number from {min} to {max}.")
NUMBER_ANY = N_("Please reply with a number.")
TEXT_EMPTY = N_("Please type your answer.")
CODE_UNKNOWN = N_("We do not know that workplace code. Please check it and try again.")
CODE_FAILED = N_(
    "We could not find your workplace. Please check the code on the poster and send any message "
    "to try again."
)
LANGUAGE_SET = N_("Language changed.")

# Menus on USSD and voice (used from the USSD and voice issues on; translated now, once).
PAGE_NEXT = N_("More")
PAGE_BACK = N_("Back")
CONTINUE = N_("Continue")
START_AGAIN = N_("Start again")
PRESS_FOR = N_("Press {key} for {option}")
NO_INPUT = N_("We did not hear your answer. Goodbye.")
# Resume after a drop (a USSD session that timed out, a call cut off).
RESUME = N_("You did not finish last time. Your answers so far are kept.")
# Voice: said before a question is asked again after silence, and instead of "reply with ...".
NOT_HEARD = N_("We did not hear your answer.")
PRESS_NUMBER = N_("Please press a key from 1 to {count}.")
KEY_NUMBER_RANGE = N_("Please key a number from {min} to {max}, then press the hash key.")
KEY_NUMBER = N_("Please key a number, then press the hash key.")
KEY_CODE = N_("Key the code, then press the hash key.")
# Voice: the star key's menu, put at any question of a call (a caller has no keyword to type):
# 1 does what STOP does, 2 asks DELETE's confirmation (ERASE_CONFIRM), any other key goes on.
STAR_MENU = N_("Do you want to leave WorkerVoice? Any other key takes you back to your question.")
STAR_STOP = N_("Stop")
STAR_ERASE = N_("Stop and erase all your answers")
# Voice: said at the start of a call (and once enrolment is done), so callers know the key.
STAR_HINT = N_("Press the star key at any time to stop.")
# Voice: a caller whose number is withheld (said in English: their language is unknown).
NUMBER_WITHHELD = N_("Please call again with your number shown. WorkerVoice never stores it.")
# The two above say "send any message": on USSD and voice, where no message is sent, these.
CODE_FAILED_AGAIN = N_(
    "We could not find your workplace. Please check the code on the poster and try again later."
)
DECLINED_AGAIN = N_(
    "You did not agree, so nothing about you was kept. You are welcome back at any time."
)
# What USSD and voice say instead of the SMS wording above (msgid -> msgid).
DIALOG_WORDS = {CODE_FAILED: CODE_FAILED_AGAIN, DECLINED: DECLINED_AGAIN}
