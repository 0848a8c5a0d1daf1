"""Every sentence bothub says on its own behalf, in one place.

Users see these in chat, so they are plain, polite and never contain internals (no exception
names, no stack traces, no configuration values).
"""

from __future__ import annotations

from bot.llm import FailureKind

EMPTY = "It looks like your message was empty. What can I help you with?"
BINARY = ("That looks like binary data rather than a question. Could you describe what you need "
          "in words?")
STORAGE_DOWN = ("Sorry, I can't take new questions right now because my storage is unavailable. "
                "Please try again in a few minutes.")
NO_MODEL = ("No language model is configured for this assistant yet, so I can't answer questions "
            "on my own. An administrator can enable answers by setting OPENAI_API_KEY.")
UNEXPECTED = ("Sorry, something went wrong on my side while answering. Your message is saved; "
              "please try again in a moment.")
KNOWLEDGE_ONLY = ("I can't write an answer myself right now, but this is what our documentation "
                  "says:")
NOTHING_FOUND_NO_MODEL = ("I couldn't find anything about that in our documentation. Could you "
                          "rephrase the question, or ask a member of the team?")
WITHHELD = "I drafted an answer but I'm not allowed to share it here."
HANDING_OVER = "Let me bring in a person from our support team for this one."
# The moderation check flagged the question (never say which category: no accusation).
MODERATION_DECLINED = ("Sorry, I'm not able to help with that message. If I misunderstood it, "
                       "could you rephrase your question?")
# ... or flagged the drafted answer (check_output): the draft is withheld like a blocked one.
MODERATION_WITHHELD = WITHHELD
MODEL_DOWN_KNOWLEDGE = ("The assistant can't write an answer right now, but this is what our "
                        "documentation says:")
FOLLOW_UP = "The assistant is back. Here is the full answer to your question:"
WILL_FOLLOW_UP = "_I'll post a full answer here as soon as the assistant is back._"
CUT_OFF = "_(My answer was interrupted. Please ask again if you need the rest.)_"
AUDIO_UNREADABLE = "I couldn't understand the voice message. Could you type your question instead?"


def too_long(limit: int, length: int) -> str:
    return (f"Your message is {length:,} characters long; I can read up to {limit:,}. "
            "Could you shorten it, or attach the long part as a file?")


def rate_limited(scope: str, retry_after: float) -> str:
    seconds = max(1, round(retry_after))
    when = f"{seconds} seconds" if seconds < 90 else f"{round(seconds / 60)} minutes"
    who = {"user": "you've sent a lot of questions", "channel": "this channel is very busy",
           "workspace": "your team is asking a lot at once"}.get(scope, "I'm very busy")
    return (f"Sorry, {who} in a short time, so I'm taking a breather. Please ask again in "
            f"about {when}; your message is saved.")


def skipped_attachments(names: list[str], reason: str) -> str:
    return f"_(I couldn't use {', '.join(names)}: {reason}.)_"


def model_failed(kind: FailureKind) -> str:
    if kind is FailureKind.RATE_LIMITED:
        return ("I'm getting more questions than I can handle right now. Your message is saved; "
                "please try again in a minute.")
    if kind is FailureKind.REJECTED:
        return ("I couldn't process that request. Your message is saved; could you rephrase it "
                "or make it shorter?")
    return ("Sorry, I couldn't reach my language model just now. Your message is saved; please "
            "try again in a moment.")
