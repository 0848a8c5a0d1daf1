"""When a conversation goes to a person instead of the model: pure checks over text.

- asks_for_human: the user asked for a person. Bothub then hands over at once, because a user
  who has asked for a human and gets another model answer is a user who stops trusting the bot.
- match_topic: the message touches a policy topic (refunds, billing disputes, security, legal)
  that the owner wants handled by people whatever the model could say.
- blocked_output: a model answer contains something the owner never wants shown.

Everything here is deterministic and side-effect free, so every decision can be tested and
explained from the text alone. Matching works on a normalised form of the text (casefolded,
accents and punctuation removed, whitespace collapsed) so "Rückerstattung", "RUCKERSTATTUNG!"
and "ruckerstattung" are the same words. Owner-supplied patterns are plain phrases, matched as
whole words in that normalised form, or regular expressions written "re:<regex>", matched
case-insensitively against the text as written (so a regex can look for punctuation, such as
an API key's "sk-" prefix in an answer).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Languages with their own phrase table below; every one has tests.
HUMAN_REQUEST_LANGUAGES: tuple[str, ...] = (
    "en", "de", "fr", "es", "pt", "it", "nl", "pl", "sv", "ru", "tr", "ja", "zh", "ko")

REGEX_PREFIX = "re:"

# Letters that NFKD does not decompose but that people routinely type without the mark.
_FOLD = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "æ": "ae",
                       "œ": "oe", "ı": "i", "ħ": "h"})
# Scripts written without spaces between words (or, for Korean, with particles glued to
# nouns): phrases in them match anywhere, not only between spaces.
_UNSPACED = (r"\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
             r"\uac00-\ud7af\uf900-\ufaff")
_SPACED_CHAR = rf"[^\W{_UNSPACED}]"
_L = rf"(?<!{_SPACED_CHAR})"  # a word starts here
_R = rf"(?!{_SPACED_CHAR})"  # a word ends here
_NON_WORD = re.compile(r"[\W_]+")


def _fold(text: str) -> str:
    """Strip accents without changing case, so regex sources (\\S, \\W) survive folding."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).translate(_FOLD)


def _normalise(text: str) -> str:
    """The form all phrase matching sees: casefolded, unaccented, words separated by one space."""
    return " ".join(_NON_WORD.sub(" ", _fold(text.casefold())).split())


# --- Phrase tables for asking for a person ---------------------------------------------------
# Written in natural spelling and folded when compiled. Each entry is a regex over normalised
# text. Person nouns are only counted after a verb of talking or connecting (or in a message
# that is nothing but the noun), because the same nouns fill ordinary product questions:
# "add a person to my team", "the agent install fails", "human-readable export".

_EN_DET = r"(?:(?:a|an|the|some|any|your|one of your|one of the) )?"
_EN_ADJ = (r"(?:(?:real|live|actual|human|proper|genuine|living|breathing|real life|in person"
           r"|flesh and blood|qualified|senior|dedicated) ){0,2}")
_EN_NOUN = (r"(?:human beings?|humans?|persons?|someone(?: else)?|somebody(?: else)?|anyone|anybody"
            r"|agents?|representatives?|reps?|operators?|staff(?: members?)?|employees?|managers?"
            r"|supervisors?|specialists?|technicians?|advis[eo]rs?|consultants?|engineers?"
            r"|support(?: (?:team|staff|agents?|reps?|representatives?|people|person|engineers?"
            r"|specialists?|desk))?|customer (?:service|support|care|success)(?: (?:team|agents?"
            r"|reps?|representatives?|managers?))?|help ?desk|service desk"
            r"|(?:real|live|actual) people)")
# Words that turn a person noun into a thing ("the agent install", "support plan").
_EN_THING = (r"readable|resources?|hr|plans?|portals?|pages?|docs|documentation|articles?|bots?"
             r"|apis?|install(?:er|ation)?s?|versions?|config(?:uration)?s?|settings?|modules?"
             r"|features?|roles?|fields?|sdks?|scripts?|process(?:es)?|logs?|status|tiers?|pricing"
             r"|polic(?:y|ies)|buttons?|widgets?|forms?|links?|templates?|accounts?|permissions?"
             r"|seats?|licen[cs]es?|modes?|errors?|interfaces?|ui|views?|lists?|groups?|types?"
             r"|profiles?|ids?|names?|sessions?|keys?|tokens?|plugins?|extensions?|software"
             r"|service|binary|daemon|package|checks?|review|verification|validation|handoff"
             r"|handover|dashboard|panel|apps?|columns?|reports?|analytics|rights|language|based")
_EN_AFTER = (r"(?! (?:in|on|from|of|at|inside|within|outside) (?:my|our)(?!\S))"
             r"(?! (?:in|on|inside|within|outside) (?:the|this|a|another|other|their) (?:workspace"
             r"|org|organi[sz]ation|channel|project|group|server|space|board)s?(?!\S))"
             rf"(?! (?:{_EN_THING})(?!\S))")
_EN_STRONG = (r"(?:human beings?|humans?|(?:real|live|actual|genuine|human|living) (?:persons?"
              r"|people|humans?|human beings?|agents?|beings?|ones?|support|help|assistance"
              r"|representatives?|reps?|operators?|someone|somebody|staff)|someone real"
              r"|somebody real|human (?:support|help|assistance|agents?|representatives?"
              r"|operators?|contact|staff)|representatives?|customer (?:service|support|care)"
              r"(?: (?:team|agents?|reps?|representatives?))?|support (?:team|staff|agents?|reps?"
              r"|representatives?|person|people))")
_EN_TASK = (r"(?:ticket|case|issue|problem|request|complaint|question|chat|conversation|query"
            r"|concern|call|matter)")

_EN = (
    rf"(?:talk|speak|chat|converse) (?:directly )?(?:to|with) {_EN_DET}{_EN_ADJ}{_EN_NOUN}"
    rf"{_EN_AFTER}",
    r"(?:talk|speak|chat) (?:to|with) (?:your|the support|a support|the customer service) team",
    rf"(?:connect|transfer|put|patch|pass|forward|route|redirect|hand|switch|send|move|bump|get"
    rf"|escalate) (?:me|us|this|it|(?:my|this) {_EN_TASK})(?: (?:over|through|off|back|along|up"
    rf"|on))? (?:to|with) {_EN_DET}{_EN_ADJ}{_EN_NOUN}{_EN_AFTER}",
    r"(?:put|patch|get) (?:me|us) through",
    rf"(?:connect|transfer|switch|pass|hand (?:this |it |me )?(?:over|off)) (?:to|with) "
    rf"(?:a |an )?{_EN_ADJ}{_EN_NOUN}{_EN_AFTER}",
    rf"escalate (?:to|with) {_EN_DET}{_EN_ADJ}{_EN_NOUN}{_EN_AFTER}",
    r"escalate (?:to|with) (?:the )?(?:(?:tier|level|l) ?(?:2|3|two|three)|(?:second|2nd|third"
    r"|3rd) (?:level|line|tier))",
    rf"escalate (?:this|it|me|(?:my|this|the) {_EN_TASK})",
    r"(?:please|pls|plz|can you|could you|would you|you should|want to|like to|need to|have to"
    r"|let s|lets) escalate$",
    rf"(?:want|wanna|need|needs|get|give|prefer|request|require|demand|bring in|reach|contact"
    rf"|call|ask for|asking for|is there|are there|any|(?:can|could|may) (?:i|we) (?:please )?have)"
    rf"(?: me| us)? {_EN_DET}{_EN_STRONG}{_EN_AFTER}",
    r"(?:want|wanna|need|get|give me|prefer|request|ask for) (?:a |an |the |some )?(?:persons?"
    r"|agents?|operators?|reps?|someone|somebody|staff|managers?|supervisors?|employees?)"
    r"(?: (?:please|pls|plz|now|asap|thanks|thank you|right now|here|already|instead"
    r"|to help(?: me)?))*$",
    r"(?:anyone|someone|somebody|anybody|(?:a |an )?(?:real |live |actual )?(?:person|human|agent"
    r"|representative)) (?:i|we) (?:can|could|may|might) (?:talk|speak|chat)",
    r"(?:anyone|someone|somebody|anybody|a (?:real |live |actual )?(?:person|human)) to (?:talk"
    r"|speak|chat) (?:to|with)",
    rf"(?:can|could|will|would|should) (?:a|an|some|any|one of your) {_EN_ADJ}(?:humans?|persons?"
    r"|agents?|representatives?|staff(?: members?)?|support agents?|employees?|engineers?|people)"
    r"(?: please)? (?:(?:help|assist|contact|call|email|phone|ring|get back to|reach out to)"
    r" (?:me|us)|(?:look at|check|review|take a look at|take over) (?:this|it|my|our))",
    r"(?:is|are) (?:there )?(?:a |an |any )?(?:humans?|someone|somebody|anyone|anybody|(?:real"
    r"|live|actual|human) (?:persons?|people|humans?|agents?)|support agents?|representatives?"
    r"|staff) (?:available|around|online|awake)",
    r"(?:someone|somebody|anyone|anybody|a person|a human|people) (?:from|at|in|on|of) (?:your"
    r" (?:team|company|staff|support(?: team)?|side|end|office)|(?:the )?(?:support|customer"
    r" service|customer support|support team|help ?desk|service desk))",
    r"(?:dont|don t|do not|not|no more|stop|done|tired of|hate|sick of|fed up with) (?:want to"
    r" |wanna |need to |like )?(?:talk|speak|chat|talking|speaking|chatting) (?:to|with) (?:a |an"
    r" |the |this |your |some )?(?:stupid |dumb |useless |automated )?(?:bots?|robots?|machines?"
    r"|ai|chatbots?|computers?|programs?|automated (?:system|assistant))",
    r"(?:not|no) (?:a |the |this |another |more )?(?:bots?|robots?|chatbots?)(?: please| pls)?$",
)

_DE_DET = (r"(?:(?:einem|einer|einen|eine|ein|dem|der|den|die|ihrem|ihrer|ihren|eurem|eurer"
           r"|nem|ner) )?")
_DE_ADJ = (r"(?:(?:echten|echte|echter|richtigen|richtige|realen|lebenden|lebendigen"
           r"|menschlichen|wirklichen) )?")
_DE_NOUN = (r"(?:menschen|mensch|(?:support|service|kunden)?mitarbeiter(?:in|innen)?"
            r"|(?:kunden)?berater(?:in)?|agent(?:en|in)?|support(?:team)?|kundenservice|kundendienst"
            r"|kundensupport|personen|person|ansprechpartner(?:in)?|operator|techniker(?:in)?"
            r"|vorgesetzten|verantwortlichen|experten|jemandem|jemanden|jemand)")
_DE_PEOPLE = (r"(?:menschen|mensch|(?:support|service|kunden)?mitarbeiter(?:in)?|(?:kunden)?berater"
              r"(?:in)?|ansprechpartner(?:in)?|kundenservice|kundendienst|support|jemandem|jemanden)")
_DE = (
    rf"mit {_DE_DET}{_DE_ADJ}{_DE_NOUN}(?: \w+){{0,4}} (?:sprechen|reden|chatten|schreiben"
    r"|telefonieren|quatschen)",
    rf"mit {_DE_DET}{_DE_ADJ}{_DE_PEOPLE}(?: \w+){{0,3}} (?:verbunden|verbinden|weitergeleitet)",
    rf"(?:verbinden|verbinde|verbindet|leiten|leite|leitet|stellen|stelle|stellt|schalten|schalte)"
    rf"(?: sie| du| ihr)? (?:mich|uns)(?: bitte)? (?:(?:mit|an|zu) {_DE_DET}{_DE_ADJ}{_DE_NOUN}"
    r"|durch|weiter$)",
    rf"(?:einen|eine|den|die|ihren|ihre|euren) {_DE_ADJ}(?:menschen|(?:support|kunden)?mitarbeiter"
    r"(?:in)?|(?:kunden)?berater(?:in)?|ansprechpartner(?:in)?|vorgesetzten|verantwortlichen"
    r"|person|techniker(?:in)?)(?: \w+){0,2} (?:sprechen|anrufen)",
    rf"an {_DE_DET}{_DE_ADJ}{_DE_PEOPLE} (?:weiterleiten|weitergeben|übergeben|abgeben|weiter)",
    r"(?:erreiche|erreichen|kontaktiere|kontaktieren|brauche|brauchen|will|möchte|moechte|hätte"
    r" gerne?|haette gerne?|wünsche|wuensche|verlange|bekomme|kriege|gibt es)(?: ich)?(?: bitte"
    r"| gerne?| jetzt| sofort)? (?:einen |eine |ein |den |die )?(?:(?:echten|echte|richtigen"
    r"|richtige|realen|lebenden|wirklichen) (?:menschen|mensch|person|mitarbeiter(?:in)?"
    r"|ansprechpartner(?:in)?)|menschen|mensch|ansprechpartner(?:in)?|kundenberater(?:in)?"
    r"|kundenservice|kundendienst|menschlichen (?:mitarbeiter|berater|support|ansprechpartner))",
)

_FR_DET = r"(?:(?:un|une|le|la|l|les|des|votre|vos|un de vos|une de vos|l un de vos) )?"
_FR_NOUN = (r"(?:(?:vrai|vraie|véritable) )?(?:être humain|humains?|conseill(?:er|ère)s?"
            r"|agents?|opérat(?:eur|rice)s?|interlocut(?:eur|rice)s?|employée?s?"
            r"|technicien(?:ne)?s?|responsables?|support|service client(?:èle)?|assistance"
            r"|quelqu ?un(?: de (?:vrai|réel|chez vous|votre équipe|l équipe|du support))?)")
_FR_VERB = (r"(?:parler|discuter|échanger|chatter|converser|communiquer|(?:être|etre) mise? en"
            r" relation|me mettre en (?:relation|contact)|mette[sz]? moi en (?:relation|contact)"
            r"|mets moi en (?:relation|contact)|me transférer|transférez moi|transférer|me passer"
            r"|passez moi|passe moi|me rediriger|redirigez moi)")
_FR = (
    rf"{_FR_VERB} (?:à|avec|au|aux|vers) {_FR_DET}{_FR_NOUN}",
    rf"{_FR_VERB} (?:à|avec|vers) (?:une|la|des|les|l une de vos) (?:vraie |véritable )?personnes?",
    r"(?:me passer|passez moi|passe moi|passez nous|je veux|je voudrais|j aimerais|j exige"
    r"|besoin d|il me faut|souhaite|souhaiterais|donnez moi|est ce qu il y a|y a t il|il y a)"
    r" (?:un|une) (?:vrai |vraie |véritable )?(?:humain|être humain|conseill(?:er|ère)"
    r"|interlocut(?:eur|rice)|opérat(?:eur|rice)|agent humain|personne(?: réelle| humaine"
    r"| physique)?|employé)",
)

_ES_DET = (r"(?:(?:un|una|el|la|los|las|algún|alguna|su|sus|uno de sus|una de sus|uno de"
           r" ustedes) )?")
_ES_NOUN = (r"(?:(?:verdadera|verdadero|auténtica|auténtico) )?(?:personas?(?: reales?| de verdad"
            r"| humanas?| físicas?)?|humanos?|ser humano|agentes?(?: humanos?| reales?)?"
            r"|asesor(?:a|es|as)?|operador(?:a|es|as)?|representantes?|ejecutiv[oa]s?|alguien"
            r"|soporte(?: técnico)?|atención al cliente|servicio al cliente|emplead[oa]s?"
            r"|encargad[oa]s?|supervisor(?:a|es)?|técnic[oa]s?|gerente|especialistas?)")
_ES = (
    rf"(?:hablar|platicar|charlar|chatear|conversar|comunicarme|comunicarse|contactar"
    rf"|contactarme|ponerme en contacto|hablen|hable) con {_ES_DET}{_ES_NOUN}",
    rf"(?:pásame|pásenme|páseme|transfiéreme|transfiérame|transfiéranme|comunícame|comuníqueme"
    rf"|comuníquenme|conéctame|conécteme|conéctenme|derívame|redirígeme|(?:me )?(?:pasas|pasa"
    rf"|pasan|puede pasar|puedes pasar|pueden pasar|podría pasar|podrías pasar|transfieres"
    rf"|transfiere|transferir|comunicas|comunica|derivas|deriva)) (?:con|a) {_ES_DET}{_ES_NOUN}",
    r"(?:quiero|necesito|quisiera|prefiero|exijo|dame|deme|denme|puedo tener|hay|existe)"
    r" (?:(?:un|una|algún|alguna|a un|a una) )?(?:humano|ser humano|persona real|persona de"
    r" verdad|persona humana|agente humano|agente real|asesor|asesora|representante"
    r"|operador humano|alguien real)",
    r"atención (?:humana|personalizada)",
)

_PT_DET = r"(?:(?:um|uma|o|a|os|as|algum|alguma|seu|sua|um dos seus|uma das suas) )?"
_PT_NOUN = (r"(?:humanos?|ser humano|atendentes?(?: humanos?| reais?)?|pessoas?(?: reais?| de"
            r" verdade| humanas?)?|agentes?(?: humanos?| reais?)?|operador(?:a|es|as)?"
            r"|representantes?|consultor(?:a|es|as)?|alguém|suporte(?: técnico)?|atendimento"
            r"(?: humano| ao cliente)?|funcionári[oa]s?|especialistas?|gerente|técnic[oa]s?"
            r"|analistas?|assistente humano)")
_PT = (
    rf"(?:falar|conversar|papear|bater (?:um )?papo|contatar|contactar|me comunicar|entrar em"
    rf" contato|ser atendid[oa]|ser transferid[oa]|ser encaminhad[oa]) (?:com|por|pelo|pela|a|ao"
    rf"|à|para|pra|pro) {_PT_DET}{_PT_NOUN}",
    rf"(?:me )?(?:transfira|transfere|transferir|passe|passa|passar|encaminhe|encaminha"
    rf"|encaminhar|conecte|conecta|coloque|coloca)(?: me)? (?:para|pra|com|a|ao|à) {_PT_DET}"
    rf"{_PT_NOUN}",
    r"(?:quero|preciso de|preciso|gostaria de|queria|prefiro|exijo|me dá|me dê|tem|existe)"
    r" (?:(?:um|uma|algum|alguma|o|a) )?(?:humano|atendente|ser humano|pessoa real|pessoa de"
    r" verdade|agente humano|representante|alguém real)",
    r"atend(?:imento|ente) humano",
)

_IT_DET = (r"(?:(?:un|una|uno|l|il|lo|la|gli|le|i|qualche|un vostro|una vostra|il vostro"
           r"|la vostra|uno dei vostri) )?")
_IT_NOUN = (r"(?:(?:vera|vero|veri|vere) )?(?:operat(?:ore|rice|ori|rici)(?: uman[oa])?"
            r"|person[ae](?: real[ei]| ver[ae]| uman[ae]| in carne e ossa)?|uman[oi]"
            r"|essere umano|agent[ei](?: uman[oi])?|consulent[ei]|assistent[ei] uman[oi]"
            r"|addett[oaie]|qualcuno|assistenza(?: clienti)?|servizio clienti"
            r"|supporto(?: tecnico)?|responsabil[ei]|tecnic[oi]|impiegat[oaie]|dipendent[ei]"
            r"|specialist[ai])")
_IT = (
    rf"(?:parlare|chattare|conversare|comunicare|essere mess[oa] in contatto|mettermi in contatto"
    rf"|mettetemi in contatto|mi metta in contatto|mi metti in contatto|mettimi in contatto"
    rf"|essere trasferit[oa]|essere passat[oa]) (?:con|a|ad|al|allo|alla|all|coi|col) {_IT_DET}"
    rf"{_IT_NOUN}",
    rf"(?:passami|passatemi|mi passi|mi passa|mi passate|trasferiscimi|mi trasferisca"
    rf"|mi trasferisci|mi trasferite|collegami|mi colleghi|mi collega)(?: con| a| al| all| allo"
    rf"| alla)? {_IT_DET}{_IT_NOUN}",
    r"(?:voglio|vorrei|chiedo|preferisco|mi serve|ho bisogno di|c è|esiste|datemi|dammi)"
    r" (?:(?:un|una|uno|un vero|una vera) )?(?:operatore|operatrice|umano|essere umano|persona"
    r" reale|persona vera|vera persona|consulente|addetto|operatore umano)",
)

_NL_DET = r"(?:(?:een|de|het|jullie|uw|je|een van jullie) )?"
_NL_ADJ = r"(?:(?:echte|echt|levende|menselijke) )?"
_NL_NOUN = (r"(?:mens(?:en)?|medewerk(?:er|ster|ers)|personen|persoon|iemand|klantenservice"
            r"|klantendienst|support(?:afdeling|team|medewerker)?|helpdesk|servicedesk"
            r"|(?:klant)?adviseur|vertegenwoordiger|operator|manager|leidinggevende|specialist"
            r"|servicemedewerker)")
_NL = (
    rf"met {_NL_DET}{_NL_ADJ}{_NL_NOUN}(?: \w+){{0,4}} (?:spreken|praten|chatten|bellen"
    r"|overleggen|verbonden|doorverbonden|contact opnemen|in contact)",
    rf"(?:spreken|praten|chatten|bellen|overleggen|contact opnemen|in contact komen|doorverbonden"
    rf" worden|verbonden worden) met {_NL_DET}{_NL_ADJ}{_NL_NOUN}",
    rf"(?:een|de) {_NL_ADJ}(?:mens|medewerker|medewerkster|persoon|(?:klant)?adviseur"
    r"|vertegenwoordiger|leidinggevende|manager) (?:te )?(?:spreken|aan de lijn|aan de telefoon)",
    rf"(?:(?:verbind|verbindt|verbinden|schakel|zet|stuur) (?:me|mij|ons)(?: door| even"
    rf"| alsjeblieft| aub)? (?:met|naar|aan|door naar)|(?:me|mij|ons) (?:doorverbinden"
    rf"|doorschakelen|doorsturen|verbinden) (?:met|naar)) {_NL_DET}{_NL_ADJ}{_NL_NOUN}",
    r"(?:wil|wens|zou graag|heb|is er|zijn er|wilt u me|wil je me) (?:graag |nu )?(?:een |de )?"
    r"(?:echte mens|echt mens|mens|echte persoon|echt persoon|levend persoon|menselijke"
    r" medewerker)",
    r"menselijke? (?:hulp|contact|ondersteuning)",
)

_PL_ADJ_INS = r"(?:(?:prawdziwym|żywym|prawdziwą|żywą|realnym) )?"
_PL_ADJ_ACC = r"(?:(?:prawdziwego|żywego|prawdziwej|żywej|prawdziwą|żywą) )?"
_PL = (
    rf"(?:rozmawiać|porozmawiać|pogadać|gadać|pisać|popisać|mówić|czatować|skontaktować się"
    rf"|kontaktować się|połączyć się|(?:połącz|połączcie|połączyć|przełącz|przełączcie|przełączyć"
    rf"|przekieruj|przekierujcie|przekierować) mnie) (?:z|ze) {_PL_ADJ_INS}(?:człowiekiem|ludźmi"
    r"|konsultant(?:em|ką)|agentem|pracownik(?:iem|icą)|osobą|kimś|operatorem|doradcą"
    r"|obsługą(?: klienta)?|supportem|wsparciem|specjalistą|przedstawicielem|kierownikiem"
    r"|menedżerem|managerem|infolinią|biurem obsługi)",
    rf"(?:połącz|połączcie|połączyć|przełącz|przełączcie|przełączyć|przekieruj|przekierujcie"
    rf"|przekierować|przekaż|przekażcie|przekazać)(?: mnie| rozmowę| sprawę| to)? (?:na|do)"
    rf" {_PL_ADJ_ACC}(?:konsultant(?:a|ki)|człowieka|pracownika|operatora|doradcy|osoby"
    r"|obsługi|supportu|specjalisty|działu obsługi|infolinii)",
    rf"(?:chcę|potrzebuję|proszę o|poproszę|wezwij|dajcie|daj mi) {_PL_ADJ_ACC}(?:człowieka"
    r"|konsultant(?:a|kę)|doradcę|osobę|pracownika obsługi)",
    r"(?:żywy|prawdziwy|żywego|prawdziwego) człowiek",
)

_SV_NOUN = (r"(?:(?:riktig|verklig|levande|mänsklig|äkta) )?(?:människa|människor|personal"
            r"|person|handläggare(?:n)?|agent(?:en)?|medarbetare|kundtjänst(?:en)?|kundservice"
            r"|kundsupport(?:en)?|support(?:en)?|supportpersonal|någon|operatör|representant"
            r"|tekniker|chef|ansvarig|(?:kund)?rådgivare)")
_SV_DET = r"(?:(?:en|ett|någon|er|era|din|en av era) )?"
_SV = (
    rf"(?:prata|tala|snacka|chatta|bli kopplad|bli kopplade|komma i kontakt|få kontakt) med"
    rf" {_SV_DET}{_SV_NOUN}",
    rf"(?:koppla|slussa|skicka|flytta|överför)(?: mig| oss)?(?: vidare| över)? (?:till|med)"
    rf" {_SV_DET}{_SV_NOUN}",
    r"(?:vill ha|vill|behöver|önskar|kan jag få|får jag|finns det) (?:en |ett )?(?:(?:riktig"
    r"|verklig|levande|äkta) (?:person|människa)|människa|handläggare|kundtjänst|mänsklig"
    r" (?:hjälp|kontakt|support))",
)

_RU_ADJ = r"(?:(?:живым|настоящим|реальным|живого|настоящего|реального|живой|настоящий) )?"
_RU = (
    rf"(?:поговорить|говорить|общаться|пообщаться|переписываться|связаться|соедините|соединить"
    rf"|свяжите|переключите|переключить|переведите|перевести)(?: меня)? (?:с|со|на) {_RU_ADJ}"
    r"(?:человеком|людьми|оператором|специалистом|сотрудником|менеджером|консультантом|агентом"
    r"|поддержкой|службой поддержки|представителем|оператора|человека|специалиста|сотрудника"
    r"|менеджера|консультанта|поддержку)",
    rf"(?:нужен|нужна|хочу|позовите|позови|дайте|требую|пригласите) {_RU_ADJ}(?:человек|человека"
    r"|оператор|оператора|специалист|специалиста|сотрудник|сотрудника|менеджер|менеджера"
    r"|консультант|консультанта)",
)

_TR = (
    r"(?:temsilci\w*|müşteri temsilci\w*|yetkili\w*|insan(?:la|layla|ile)|gerçek (?:bir )?(?:insan"
    r"|kişi)\w*|canlı deste\w*|operatör\w*|biri(?:si)?(?:yle|ile)|canlı (?:bir )?(?:insan|kişi"
    r"|temsilci)\w*)(?: ile)?(?: \w+)? (?:konuş|görüş|bağla|bağlan|aktar|yönlendir|sohbet)\w*",
    r"(?:gerçek bir insan|canlı destek|müşteri temsilcisi|temsilci) (?:istiyorum|lazım|gerekiyor"
    r"|rica ediyorum)",
)

# Unspaced scripts: matched as substrings, so each entry carries enough context on its own.
_JA = (
    r"(?:人間|(?<![友知恋個他本老職商軍聖詩巨病隣主客家成外大芸犯何一])人|担当者|担当の方|スタッフ"
    r"|オペレーター?|係の人|係員|サポート(?:担当者?|の人|スタッフ)|生身の人間|窓口の人)(?:さん)?"
    r"(?:と|に|へ)(?:直接)?(?:話|はな|代わ|かわ|替わ|変わ|つな|繋|接続|相談|切り替|切替|対応"
    r"|チャット|連絡|転送)",
    r"有人(?:対応|チャット|サポート|窓口)",
    r"(?:人間|担当者|スタッフ|オペレーター?|係の人|係員)(?:を|に)?(?:呼|お願い|出して)",
    r"^(?:人間|担当者|オペレーター?|有人|スタッフ)(?:さん)?(?:を)?(?:お願い(?:します)?|頼む"
    r"|ください)?$",
)
_ZH = (
    r"人工(?:客服|服务|服務|坐席|座席|支持|支援|对话|對話|帮助|幫助|接待|回复|回覆)",
    r"(?:转|轉|找|转接|轉接|联系|聯繫|联络|聯絡|呼叫|换|換|切换到|切換到)(?:人工|真人|客服"
    r"|工作人员|工作人員)",
    r"真人(?!秀|版|照)",
    r"(?:和|跟|与|與|同)(?:真人|人类|人類|工作人员|工作人員|客服|人工|一个人|一個人|真正的人)"
    r"(?:说话|說話|交谈|交談|聊天|聊|沟通|溝通|对话|對話|谈|談|讲|講)",
    r"^(?:人工|客服|人工客服)(?:吧|啊|呢|谢谢|謝謝|请|請)?$",
)
_KO = (
    r"(?:상담원|상담사|상담 직원|상담직원|사람|담당자|매니저|실제 사람|진짜 사람)"
    r"(?:과|와|이랑|랑|하고|한테|에게|님과|님이랑|님한테|님께)? ?"
    r"(?:대화|통화|얘기|이야기|연결|상담|채팅|바꿔|연락)",
    r"^(?:상담원|상담사|사람)(?: 연결)?(?: 부탁(?:해요|합니다|드려요)?| 해주세요| 요| 좀)*$",
)

_HUMAN_TABLES: dict[str, tuple[str, ...]] = {
    "en": _EN, "de": _DE, "fr": _FR, "es": _ES, "pt": _PT, "it": _IT, "nl": _NL, "pl": _PL,
    "sv": _SV, "ru": _RU, "tr": _TR, "ja": _JA, "zh": _ZH, "ko": _KO}
_UNSPACED_LANGUAGES = frozenset({"ja", "zh", "ko"})

# A message that is nothing but a person noun ("human", "Agent!", "a real person please").
_BARE = frozenset(_normalise(w) for w in (
    "human", "humans", "a human", "real human", "human being", "person", "real person",
    "live person", "actual person", "agent", "live agent", "human agent", "real agent",
    "operator", "representative", "rep", "customer service", "customer support",
    "customer care", "staff", "manager", "supervisor", "someone", "somebody", "anyone",
    "escalate", "mensch", "mitarbeiter", "kundenservice", "kundendienst", "berater",
    "humain", "conseiller", "opérateur", "agent humain", "humano", "agente", "asesor",
    "operador", "persona", "atendente", "pessoa", "operatore", "umano", "mens", "medewerker",
    "konsultant", "człowiek", "människa", "handläggare", "kundtjänst", "оператор", "человек",
    "temsilci", "canlı destek", "müşteri temsilcisi"))
_FILLERS = frozenset(_normalise(" ".join((
    "please pls plz can could would you i want wanna need get give me a an the some just hi",
    "hello hey ok okay yes now asap thanks thank thx ty again already right here help",
    "bitte ein einen eine svp stp s il vous te plait un une por favor una uno per favore",
    "piacere um uma alstublieft alsjeblieft aub graag een prosze proszę tack snälla en ett",
    "пожалуйста lütfen"))).split())


def _compile_human() -> re.Pattern[str]:
    parts = []
    for language, table in _HUMAN_TABLES.items():
        for source in table:
            folded = _fold(source)
            parts.append(folded if language in _UNSPACED_LANGUAGES else f"{_L}(?:{folded}){_R}")
    return re.compile("|".join(parts))


_HUMAN_RE = _compile_human()


def _is_bare_request(normalised: str) -> bool:
    words = normalised.split()
    while words and words[0] in _FILLERS:
        words.pop(0)
    while words and words[-1] in _FILLERS:
        words.pop()
    deduped = [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]]  # "agent agent"
    return " ".join(deduped) in _BARE


# --- Owner-configured patterns ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CompiledPattern:
    """One configured pattern, ready to search. Keeps its source so callers can say which
    pattern fired (in logs, and as blocked_output's result)."""

    source: str
    regex: re.Pattern[str]
    on_raw_text: bool  # "re:" patterns see the text as written, phrases the normalised text

    def search(self, text: str, normalised: str) -> bool:
        return self.regex.search(text if self.on_raw_text else normalised) is not None


def _phrase_regex(normalised: str) -> str:
    """Whole words in spaced scripts; anywhere for CJK ends (those have no spaces to find)."""
    left = _L if re.match(_SPACED_CHAR, normalised[0]) else ""
    right = _R if re.match(_SPACED_CHAR, normalised[-1]) else ""
    return left + re.escape(normalised) + right


@lru_cache(maxsize=256)
def _compile_cached(patterns: tuple[str, ...]) -> tuple[CompiledPattern, ...]:
    compiled = []
    for pattern in patterns:
        if pattern.startswith(REGEX_PREFIX):
            body = pattern[len(REGEX_PREFIX):]
            try:
                regex = re.compile(body, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(
                    f"invalid regular expression in pattern {pattern!r}: {exc}") from exc
            if regex.fullmatch("") is not None:
                # It would match every text: every answer blocked, every message escalated.
                raise ValueError(
                    f"pattern {pattern!r} matches empty text, so it would match everything")
            compiled.append(CompiledPattern(pattern, regex, on_raw_text=True))
        else:
            normalised = _normalise(pattern)
            if not normalised:
                raise ValueError(f"pattern {pattern!r} has no letters or digits to match")
            compiled.append(CompiledPattern(pattern, re.compile(_phrase_regex(normalised)),
                                            on_raw_text=False))
    return tuple(compiled)


def compile_patterns(patterns: Sequence[str]) -> tuple[CompiledPattern, ...]:
    """Compile configured patterns: "re:<regex>" or a plain phrase.

    Config validation calls this so a broken pattern stops startup with a message naming it,
    instead of failing on the first user message. Raises ValueError for an invalid regex, a
    regex that matches empty text, or a phrase with nothing to match. Results are cached, since
    the same configured tuples are checked on every message.
    """
    return _compile_cached(tuple(patterns))


# --- Public checks ---------------------------------------------------------------------------

def asks_for_human(text: str, extra_phrases: Sequence[str] = ()) -> bool:
    """True when the message asks to talk to a person/agent/human/support staff.

    Built-in phrasings cover HUMAN_REQUEST_LANGUAGES; extra_phrases (configured, same syntax as
    Topic.patterns) add the owner's own. Negation is deliberately not interpreted: "why can't I
    talk to a human?" is a request too, and a needless handover costs far less than ignoring
    someone who asked for a person.
    """
    normalised = _normalise(text)
    if not normalised:
        return False
    if _HUMAN_RE.search(normalised) or _is_bare_request(normalised):
        return True
    return any(p.search(text, normalised) for p in compile_patterns(extra_phrases))


@dataclass(frozen=True, slots=True)
class Topic:
    """A subject that policy says people handle, however well the model could answer it.

    Any mention counts, even "typo on the refund policy page": the owner listed the topic
    because a wrong automated answer there costs money or trust, and a person can dismiss a
    false alarm in seconds. Phrases are whole words, so word forms must be listed explicitly
    ("refund", "refunded", "refunds"); "securityscorecard" does not contain "security".
    """

    name: str
    patterns: tuple[str, ...]  # phrases (whole words, any case, accents ignored) or "re:<regex>"
    reply: str  # the canned reply shown to the user

    def __post_init__(self) -> None:
        # Patterns usually come from YAML lists; a tuple keeps the topic hashable (cacheable).
        object.__setattr__(self, "patterns", tuple(self.patterns))
        if not self.patterns:
            raise ValueError(f"topic {self.name!r} has no patterns")
        compile_patterns(self.patterns)  # fail at configuration time, naming the bad pattern


def match_topic(text: str, topics: Sequence[Topic]) -> Topic | None:
    """The first topic (in configured order, so the owner sets priority) whose pattern matches."""
    normalised = _normalise(text)
    for topic in topics:
        if any(p.search(text, normalised) for p in compile_patterns(topic.patterns)):
            return topic
    return None


def blocked_output(text: str, patterns: Sequence[str]) -> str | None:
    """The first configured pattern found in a model answer, else None.

    Returns the pattern itself so the caller can log why an answer was withheld without
    logging the answer.
    """
    normalised = _normalise(text)
    for pattern in compile_patterns(patterns):
        if pattern.search(text, normalised):
            return pattern.source
    return None


DEFAULT_TOPICS: tuple[Topic, ...] = (
    Topic(
        name="refunds",
        patterns=(
            "refund", "refunds", "refunded", "refunding", "refundable", "money back",
            "chargeback", "chargebacks", "charge back", "reimburse", "reimbursement",
            "reembolso", "reembolsar", "remboursement", "rembourser", "Rückerstattung",
            "rückerstatten", "Erstattung", "Geld zurück", "rimborso", "rimborsare", "estorno",
            "terugbetaling", "geld terug", "zwrot pieniędzy", "återbetalning", "возврат денег",
            "para iadesi", "返金", "退款", "환불"),
        reply=("Refunds are handled by our billing team, so I'm bringing in a person who can "
               "look at your account."),
    ),
    Topic(
        name="billing_dispute",
        patterns=(
            "charged twice", "charged me twice", "double charged", "double charge",
            "billed twice", "double billed", "wrong charge", "incorrect charge",
            "dispute a charge", "dispute the charge", "dispute this charge", "disputed charge",
            "billing dispute", "overcharged", "overcharge", "over charged",
            "unauthorized charge", "unauthorised charge", "unauthorized payment",
            "unrecognized charge", "unrecognised charge", "fraudulent charge",
            "doppelt abgebucht", "doppelt berechnet", "cobro duplicado", "cobrado dos veces",
            "prélevé deux fois", "débité deux fois", "cobrança duplicada", "addebito doppio"),
        reply=("Questions about charges go to our billing team, so I'm handing this to a person "
               "who can check your payments."),
    ),
    Topic(
        name="security",
        patterns=(
            "hacked", "account hacked", "hacker", "compromised", "data breach",
            "security breach", "phishing", "someone logged into my account",
            "someone logged in to my account", "someone accessed my account",
            "unauthorized access", "unauthorised access", "unauthorized login",
            "suspicious login", "stolen password", "password was stolen", "leaked password",
            "leaked credentials", "account takeover", "vulnerability", "vulnerability report",
            "security vulnerability", "security issue", "security incident",
            "responsible disclosure", "bug bounty", "malware", "ransomware", "gehackt",
            "compte piraté", "cuenta hackeada", "conta hackeada", "account violato",
            "不正アクセス", "乗っ取られ", "被盗", "被黑"),
        reply=("That sounds like a security matter, so I'm bringing in a person from our "
               "security team right away."),
    ),
    Topic(
        name="legal",
        patterns=(
            "lawyer", "lawyers", "attorney", "attorneys", "lawsuit", "legal action",
            "legal department", "litigation", "sue you", "going to sue", "take you to court",
            "court order", "subpoena", "cease and desist", "solicitor", "gdpr request",
            "dsgvo anfrage", "data deletion request", "delete my data", "delete all my data",
            "erase my data", "right to be forgotten", "right to erasure",
            "data subject access request", "subject access request", "data subject request",
            "dsar", "ccpa request", "Anwalt", "Rechtsanwalt", "abogado", "avocat", "avvocato",
            "advogado", "advocaat", "prawnik", "弁護士", "律师", "律師", "诉讼", "訴訟"),
        reply=("Legal and data-protection requests are handled by our legal team, so I'm passing "
               "this to a person who can help."),
    ),
)
