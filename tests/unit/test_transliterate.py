"""SMS transliteration to GSM-7 (Twilio's Smart Encoding): the look-alike table, the segments
it saves, and the campaign option from the API spec through the event to the estimate."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from herald.api.campaign_spec import CampaignIn, build_event, message_units
from herald.demo import campaign_event
from herald.domain.channels import SendingMode
from herald.domain.events import EventError, parse_campaign_confirmed
from herald.domain.sms import is_gsm7, num_segments, transliterate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GSM, UCS2 = "GSM-7", "UCS-2"


def _encoding(body: str) -> str:
    return GSM if is_gsm7(body) else UCS2


@pytest.mark.parametrize(
    ("body", "sent", "before", "after"),
    [
        # Word-processor punctuation: smart quotes, apostrophe, em dash, ellipsis.
        ("“Hello” — it’s 20% off…", '"Hello" - it\'s 20% off...', (UCS2, 1), (GSM, 1)),
        ("«Oui» „ja“ ‚ok‘ ′5″", '"Oui" "ja" \'ok\' \'5"', (UCS2, 1), (GSM, 1)),
        ("a–b ‒ c ― d − e ‐ f ‑ g", "a-b - c - d - e - f - g", (UCS2, 1), (GSM, 1)),
        ("´tick` ‹x›", "'tick' <x>", (UCS2, 1), (GSM, 1)),
        # One smart quote in 72 characters: 2 UCS-2 parts, 1 GSM-7 segment.
        ("‘" + "x" * 70 + "’", "'" + "x" * 70 + "'", (UCS2, 2), (GSM, 1)),
        ("—" + "a" * 149, "-" + "a" * 149, (UCS2, 3), (GSM, 1)),
        # The ellipsis grows to three septets: 161 of them need a second part.
        ("a" * 158 + "…", "a" * 158 + "...", (UCS2, 3), (GSM, 2)),
        # Unicode spaces: no-break, thin, ideographic, narrow no-break, em; tab; separators.
        ("a\u00a0b\u2009c\u3000d\u202fe\u2003f", "a b c d e f", (UCS2, 1), (GSM, 1)),
        ("a\tb\u2028c", "a b\nc", (UCS2, 1), (GSM, 1)),
        # Invisible characters go: zero-width space, soft hyphen, byte order mark.
        ("\ufeffzero\u200bwidth\u00adsoft", "zerowidthsoft", (UCS2, 1), (GSM, 1)),
        # Accented letters GSM-7 lacks lose the accent; those it has (É, Ç, à, ñ) stay.
        ("Ávila, Évora, Çà, Łódź", "Avila, Évora, Çà, Lodz", (UCS2, 1), (GSM, 1)),
        ("Ångström São Paulo Kraków ÈÌ", "Ångström Sao Paulo Krakow EI", (UCS2, 1), (GSM, 1)),
        ("Œuvre, Þór, straße", "OEuvre, Thor, straße", (UCS2, 1), (GSM, 1)),
        # Accents go from the last while GSM-7 lacks the letter: ǜ keeps its ü.
        ("Lǜ chá, Việt Nam", "Lü cha, Viet Nam", (UCS2, 1), (GSM, 1)),
        # Compatibility forms that look the same: fullwidth, ligatures, fractions, math bold.
        ("Ｓａｌｅ！　５０％", "Sale! 50%", (UCS2, 1), (GSM, 1)),
        ("ﬁne ½ price ÷ 2", "fine 1/2 price / 2", (UCS2, 1), (GSM, 1)),
        ("𝐁𝐢𝐠 sale", "Big sale", (UCS2, 1), (GSM, 1)),
        # Extension characters are GSM-7 (two septets each): nothing to do.
        ("Hi {name} [€5] ~ok|", "Hi {name} [€5] ~ok|", (GSM, 1), (GSM, 1)),
        # One character without a look-alike keeps the whole body, smart quotes included.
        ("“Sale” 🎉", "“Sale” 🎉", (UCS2, 1), (UCS2, 1)),
        ("“你好”", "“你好”", (UCS2, 1), (UCS2, 1)),
        ("Привет — “мир”", "Привет — “мир”", (UCS2, 1), (UCS2, 1)),
        ("10 m² “today”", "10 m² “today”", (UCS2, 1), (UCS2, 1)),  # m² is not m2
        ("①“x”", "①“x”", (UCS2, 1), (UCS2, 1)),
        ("¨x", "¨x", (UCS2, 1), (UCS2, 1)),  # a spacing accent is not a space
        ("", "", (GSM, 1), (GSM, 1)),
    ],
)
def test_transliterate(
    body: str, sent: str, before: tuple[str, int], after: tuple[str, int]
) -> None:
    assert (_encoding(body), num_segments(body)) == before
    assert transliterate(body) == sent
    assert (_encoding(sent), num_segments(sent)) == after


def test_every_character_becomes_gsm7_or_stays() -> None:
    for code in range(0x30000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        ch = chr(code)
        out = transliterate(ch)
        assert out == ch or is_gsm7(out), (hex(code), out)


def test_transliteration_is_idempotent() -> None:
    for body in ("“Hi” — Łódź…", "Ｓａｌｅ！", "“Sale” 🎉"):
        assert transliterate(transliterate(body)) == transliterate(body)


def _event(sms: dict[str, Any]) -> dict[str, Any]:
    raw = campaign_event(campaign_id="c", account_id="a", mode=SendingMode.SMS, tags=["t"])
    raw["content"]["sms"].update(sms)
    return raw


@pytest.mark.parametrize(("sms", "flag"), [({}, False), ({"transliterate": True}, True)])
def test_the_event_carries_the_flag(sms: dict[str, Any], flag: bool) -> None:
    event = parse_campaign_confirmed(_event(sms))
    assert event.content.sms is not None
    assert event.content.sms.transliterate is flag


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_the_flag_is_a_boolean(bad: object) -> None:
    with pytest.raises(EventError) as exc:
        parse_campaign_confirmed(_event({"transliterate": bad}))
    assert exc.value.field == "content.sms.transliterate"


def _spec(**kw: Any) -> CampaignIn:
    return CampaignIn.model_validate({"name": "n", "channel": "sms", "tags": ["t"], **kw})


BODY = "“Spring sale” " + "x" * 100  # 114 characters


def test_the_api_spec_carries_the_flag_into_the_event() -> None:
    on = _spec(body=BODY, content={"sms": {"transliterate": True}})
    event = build_event(spec=on, campaign_id="c", account_id="a", templates={}, now=NOW)
    assert event["content"]["sms"] == {"body": BODY, "transliterate": True}
    parsed = parse_campaign_confirmed(event)
    assert parsed.content.sms is not None and parsed.content.sms.transliterate

    off = build_event(spec=_spec(body=BODY), campaign_id="c", account_id="a", templates={}, now=NOW)
    assert "transliterate" not in off["content"]["sms"]  # events without it read as before


def test_an_ab_variant_keeps_the_campaigns_flag() -> None:
    variants = [{"name": "a", "weight": 50, "body": BODY}, {"name": "b", "weight": 50}]
    spec = _spec(
        body="short",
        content={"sms": {"transliterate": True}},
        ab_test={"variants": variants},
    )
    event = build_event(spec=spec, campaign_id="c", account_id="a", templates={}, now=NOW)
    assert [v["content"]["sms"].get("transliterate") for v in event["variants"]] == [True, True]
    assert message_units(spec, {}) == 1


def test_segments_follow_the_flag() -> None:
    assert message_units(_spec(body=BODY), {}) == 2  # UCS-2: 67 per part
    assert message_units(_spec(body=BODY, content={"sms": {"transliterate": True}}), {}) == 1
    # Nothing to gain with an emoji: UCS-2 either way.
    emoji = BODY + " 🎉"
    assert message_units(_spec(body=emoji, content={"sms": {"transliterate": True}}), {}) == 2
