"""Escalation triggers: requests for a person are recognised in every supported language, while
ordinary support questions that mention people, agents or support stay with the bot; policy
topics and blocked output match whole words, ignoring case and accents."""

from __future__ import annotations

import pytest

from bot.escalation.triggers import (
    DEFAULT_TOPICS,
    HUMAN_REQUEST_LANGUAGES,
    Topic,
    asks_for_human,
    blocked_output,
    compile_patterns,
    match_topic,
)

ASKS_FOR_HUMAN: list[tuple[str, str]] = [
    ("en", "talk to a human"),
    ("en", "Human please"),
    ("en", "agent!"),
    ("en", "HUMAN"),
    ("en", "operator"),
    ("en", "person"),
    ("en", "Representative."),
    ("en", "live agent pls"),
    ("en", "a real person please"),
    ("en", "agent agent agent"),
    ("en", "need human"),
    ("en", "I want a real person"),
    ("en", "can i speak with someone"),
    ("en", "connect me to support"),
    ("en", "escalate this"),
    ("en", "Can you escalate my ticket?"),
    ("en", "I want to escalate."),
    ("en", "please escalate to a manager"),
    ("en", "Can I talk to a real person please?"),
    ("en", "I'd like to speak with a manager"),
    ("en", "Put me through to customer service"),
    ("en", "put me through"),
    ("en", "Transfer me to a human agent"),
    ("en", "Get me a live agent"),
    ("en", "hand me over to a person"),
    ("en", "Is there a person I can talk to?"),
    ("en", "Is there anyone I can speak with?"),
    ("en", "I need someone to talk to"),
    ("en", "Please let me talk to someone from your team"),
    ("en", "I don't want to talk to a bot"),
    ("en", "Stop, I need a human"),
    ("en", "Can a human look at this?"),
    ("en", "Can someone from support help me?"),
    ("en", "I'd rather chat with a real human"),
    ("en", "How do I reach a human?"),
    ("en", "can i get human support"),
    ("en", "Is a human available?"),
    ("en", "I need to speak to customer service"),
    ("en", "Can you connect me with your support team?"),
    ("en", "why can't I talk to a human?!"),
    ("en", "ＴＡＬＫ ＴＯ Ａ ＨＵＭＡＮ"),
    ("en", "talk  to\n a   HUMAN!!!"),
    ("de", "Ich möchte mit einem Menschen sprechen"),
    ("de", "Kann ich bitte mit jemandem vom Support sprechen?"),
    ("de", "Verbinden Sie mich bitte mit einem Mitarbeiter"),
    ("de", "Ich will einen echten Menschen!"),
    ("de", "Ich möchte einen Mitarbeiter sprechen"),
    ("de", "Wie erreiche ich den Kundenservice?"),
    ("de", "Mensch bitte"),
    ("fr", "Je veux parler à un humain"),
    ("fr", "Puis-je parler à une personne ?"),
    ("fr", "Je voudrais parler à un conseiller"),
    ("fr", "passez-moi un conseiller svp"),
    ("fr", "J'aimerais parler à quelqu’un"),
    ("es", "Quiero hablar con una persona"),
    ("es", "¿Puedo hablar con un humano?"),
    ("es", "Necesito hablar con un agente"),
    ("es", "Quiero hablar con alguien"),
    ("es", "Pásame con un asesor"),
    ("es", "humano por favor"),
    ("pt", "Quero falar com um humano"),
    ("pt", "Preciso falar com um atendente"),
    ("pt", "Posso falar com uma pessoa?"),
    ("pt", "atendente"),
    ("it", "Vorrei parlare con un operatore"),
    ("it", "Posso parlare con una persona?"),
    ("it", "Voglio parlare con un umano"),
    ("it", "operatore per favore"),
    ("nl", "Ik wil met een mens spreken"),
    ("nl", "Kan ik een medewerker spreken?"),
    ("nl", "Kan ik praten met een medewerker?"),
    ("pl", "Chcę porozmawiać z konsultantem"),
    ("pl", "Połącz mnie z człowiekiem"),
    ("pl", "chce porozmawiac z czlowiekiem"),
    ("sv", "Jag vill prata med en människa"),
    ("sv", "Kan jag få prata med någon?"),
    ("ru", "Хочу поговорить с оператором"),
    ("ru", "Соедините меня с живым человеком"),
    ("ru", "человек"),
    ("tr", "Bir temsilciyle görüşmek istiyorum"),
    ("tr", "Canlı desteğe bağlanmak istiyorum"),
    ("ja", "人と話したい"),
    ("ja", "オペレーターと話したいです"),
    ("ja", "担当者に代わってください"),
    ("ja", "オペレーター"),
    ("zh", "转人工"),
    ("zh", "人工客服"),
    ("zh", "我想和真人聊天"),
    ("zh", "人工"),
    ("ko", "상담원 연결해 주세요"),
    ("ko", "사람과 대화하고 싶어요"),
]

ORDINARY_QUESTIONS: list[str] = [
    "how do I add a person to my team?",
    "the agent install fails",
    "what does the support plan include?",
    "human resources module settings",
    "can someone in my team see my tasks?",
    "how do I talk to the API?",
    "invite a team member",
    "I want to connect Slack",
    "the escalation policy feature",
    "remove a user from the workspace",
    "is there a human-readable export?",
    "am I talking to a bot or a human?",
    "Are you a real person?",
    "How do I assign an agent to a ticket?",
    "the operator crashed after the upgrade",
    "how do I chat with someone in my team?",
    "Is there an agent for Windows?",
    "Is there an agent available for Linux?",
    "I need a person-level report",
    "Can I talk to you about pricing?",
    "How do I contact a user in my workspace?",
    "Set up live chat for my website",
    "Explain the human handoff feature",
    "How do I escalate an alert to the on-call person?",
    "Can you escalate the priority of ticket 123 in the UI?",
    "I need to give my staff access",
    "How do I transfer ownership to another person?",
    "connect the agent to the server",
    "how do I talk to my team from Slack?",
    "Does the Pro plan include a dedicated account manager?",
    "I think it's a human error",
    "I already talked to support and they said it works",
    "Speech to text: speak to text doesn't work",
    "can users talk to the bot in Teams?",
    "I need support with exports",
    "help",
    "Wie füge ich eine Person zu meinem Team hinzu?",
    "Ich möchte einen Mitarbeiter hinzufügen",
    "Wie verbinde ich den Server mit dem Agenten?",
    "Comment ajouter une personne à mon équipe ?",
    "¿Cómo agrego a una persona a mi equipo?",
    "Como adiciono uma pessoa à minha equipe?",
    "Come aggiungo un operatore al progetto?",
    "Hoe voeg ik een medewerker toe?",
    "Jak dodać osobę do zespołu?",
    "Hur lägger jag till en person i teamet?",
    "Как добавить сотрудника в команду?",
    "人工智能功能怎么用",
    "需要客服系统",
    "チームに人を追加する方法",
    "Kubernetesオペレーターのインストール",
    "상담원 추가하는 방법",
    "",
    "   ?!  ",
]


@pytest.mark.parametrize(("language", "text"), ASKS_FOR_HUMAN,
                         ids=[f"{lang}-{i}" for i, (lang, _) in enumerate(ASKS_FOR_HUMAN)])
def test_requests_for_a_person_are_recognised(language: str, text: str) -> None:
    assert asks_for_human(text), f"{language}: {text!r}"


@pytest.mark.parametrize("text", ORDINARY_QUESTIONS)
def test_ordinary_questions_stay_with_the_bot(text: str) -> None:
    assert not asks_for_human(text)


def test_every_listed_language_has_examples() -> None:
    assert len(ASKS_FOR_HUMAN) >= 40 and len(ORDINARY_QUESTIONS) >= 25
    assert {lang for lang, _ in ASKS_FOR_HUMAN} == set(HUMAN_REQUEST_LANGUAGES)


def test_a_long_message_is_checked_quickly_and_without_a_false_alarm() -> None:
    assert not asks_for_human("how do I configure the export settings? " * 2000)
    assert not asks_for_human("talk to " * 5000 + "the api")
    assert asks_for_human("x " * 5000 + "talk to a human")


def test_extra_phrases_add_the_owners_own_ways_of_asking() -> None:
    phrases = ["ping the crew", "re:\\bsos\\b"]
    assert not asks_for_human("please ping the crew")
    assert asks_for_human("Please PING the crew!", phrases)
    assert asks_for_human("SOS", phrases)
    assert not asks_for_human("pinging the crewmates", phrases)  # whole words only
    assert not asks_for_human("sosig", phrases)
    with pytest.raises(ValueError, match="re:\\("):
        asks_for_human("hello", ["re:("])


# --- Policy topics ------------------------------------------------------------------------

def topic_named(name: str) -> Topic:
    return next(topic for topic in DEFAULT_TOPICS if topic.name == name)


@pytest.mark.parametrize(("text", "name"), [
    ("I want a refund", "refunds"),
    ("I was refunded only half", "refunds"),
    ("Is the deposit non-refundable?", "refunds"),
    ("There's a typo on the refund policy page", "refunds"),  # any mention counts, by design
    ("Can I get my money back?", "refunds"),
    ("RÜCKERSTATTUNG bitte", "refunds"),
    ("ruckerstattung", "refunds"),
    ("Quiero un reembolso", "refunds"),
    ("Je demande un remboursement", "refunds"),
    ("我要退款", "refunds"),
    ("返金したいです", "refunds"),
    ("You charged me twice this month", "billing_dispute"),
    ("I was double-charged!", "billing_dispute"),
    ("I've been overcharged", "billing_dispute"),
    ("I want to dispute a charge", "billing_dispute"),
    ("There's an unauthorized charge on my card", "billing_dispute"),
    ("My account was hacked", "security"),
    ("I think my password is compromised", "security"),
    ("someone logged into my account from Brazil", "security"),
    ("Is this a phishing email?", "security"),
    ("I'd like to submit a vulnerability report", "security"),
    ("Was there a data breach?", "security"),
    ("My lawyer will contact you", "legal"),
    ("We received a subpoena", "legal"),
    ("This is a GDPR request: delete my data", "legal"),
    ("Please process my data deletion request", "legal"),
    ("I am considering a lawsuit", "legal"),
])
def test_default_topics_catch_their_subjects(text: str, name: str) -> None:
    topic = match_topic(text, DEFAULT_TOPICS)
    assert topic is not None and topic.name == name


@pytest.mark.parametrize("text", [
    "How do I export my tasks?",
    "securityscorecard integration",  # "security" inside a longer word is not the word
    "Where are the security settings?",
    "Is bothub GDPR compliant?",  # product questions are answered from the knowledge base
    "How does charging work for extra seats?",
    "My colleague Sue asked about the court booking app",
    "the chargeable hours report",
])
def test_default_topics_ignore_ordinary_questions(text: str) -> None:
    assert match_topic(text, DEFAULT_TOPICS) is None


def test_default_topics_reply_politely_about_a_person_from_the_right_team() -> None:
    assert [t.name for t in DEFAULT_TOPICS] == ["refunds", "billing_dispute", "security", "legal"]
    for topic in DEFAULT_TOPICS:
        assert "person" in topic.reply and "team" in topic.reply
        assert topic.reply.isascii() and topic.reply.endswith(".")
    assert "billing team" in topic_named("refunds").reply
    assert "security team" in topic_named("security").reply


def test_the_first_matching_topic_wins() -> None:
    first = Topic("first", ("refund",), "one")
    second = Topic("second", ("refund", "invoice"), "two")
    assert match_topic("refund my invoice", [first, second]) is first
    assert match_topic("refund my invoice", [second, first]) is second
    assert match_topic("my invoice", [first, second]) is second
    assert match_topic("anything", []) is None


def test_topic_phrases_ignore_case_accents_and_punctuation_but_need_whole_words() -> None:
    topic = Topic("ops", ("Café outage", "pager"), "A person will take over.")
    assert match_topic("the CAFE—OUTAGE again", [topic]) is topic
    assert match_topic("cafe outage", [topic]) is topic
    assert match_topic("the pagerduty link", [topic]) is None
    assert match_topic("the cafe outages", [topic]) is None


def test_topic_regexes_see_the_text_as_written() -> None:
    topic = Topic("orders", ("re:order #\\d{5}",), "Orders go to people.")
    assert match_topic("Where is ORDER #12345?", [topic]) is topic
    assert match_topic("where is order 12345", [topic]) is None


def test_topics_validate_their_patterns_on_creation() -> None:
    with pytest.raises(ValueError, match="re:\\[unclosed"):
        Topic("broken", ("refund", "re:[unclosed"), "reply")
    with pytest.raises(ValueError, match="no patterns"):
        Topic("empty", (), "reply")
    from_yaml = Topic("listed", ["refund"], "reply")  # type: ignore[arg-type]
    assert from_yaml.patterns == ("refund",) and hash(from_yaml)


# --- Blocked output and pattern compilation ---------------------------------------------------

def test_blocked_output_names_the_first_pattern_found() -> None:
    patterns = ["re:sk-[a-z0-9]{20,}", "internal only", "Projekt Älpler"]
    assert blocked_output("Your key is sk-ABCDEFGHIJKLMNOPQRSTUV", patterns) == patterns[0]
    assert blocked_output("This is INTERNAL-only information.", patterns) == "internal only"
    assert blocked_output("see projekt alpler", patterns) == "Projekt Älpler"
    assert blocked_output("It is internally consistent.", patterns) is None
    assert blocked_output("anything at all", []) is None


@pytest.mark.parametrize(("pattern", "message"), [
    ("re:(", "invalid regular expression in pattern 're:\\('"),
    ("re:", "matches empty text"),
    ("re:a*", "matches empty text"),
    ("!!!", "no letters or digits"),
    ("", "no letters or digits"),
])
def test_invalid_patterns_are_refused_naming_the_pattern(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_patterns(["fine", pattern])


def test_compiled_patterns_keep_their_source_and_are_cached() -> None:
    compiled = compile_patterns(["re:abc", "a phrase", "退款"])
    assert [p.source for p in compiled] == ["re:abc", "a phrase", "退款"]
    assert compile_patterns(("re:abc", "a phrase", "退款")) is compiled
    assert compiled[2].search("我要退款", "我要退款")  # unspaced scripts match inside words
