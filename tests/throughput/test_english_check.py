"""The drafts' English check answers without lingua only where lingua would say English too."""

from __future__ import annotations

import pytest
from lingua import Language

from generation.checks import _plainly_english
from storage.ingest.langid import detector

ENGLISH = [
    "The answer is 42 because when you add the numbers together you get that value.",
    "First, read the instruction and the input carefully. Next, identify what is asked and which facts answer it.",
    "To solve this, we multiply both sides by two and then subtract three from the result.",
]
# Accent-free on purpose: with accents they never reach the shortcut (it only takes ASCII text).
OTHER = [
    "La reponse est 42 parce que lorsque vous additionnez les nombres vous obtenez cette valeur.",
    "Tout d'abord, lisez attentivement les instructions et le texte. Ensuite, identifiez ce qui est demande.",
    "Die Antwort ist 42, weil man diesen Wert erhaelt, wenn man die Zahlen in der Frage addiert.",
    "Zuerst die Anweisung und die Eingabe sorgfaeltig lesen. Dann feststellen, was gefragt ist und was es ist.",
    "La respuesta es 42 porque cuando sumas los numeros de la pregunta obtienes ese valor.",
    "Primero, lee la instruccion y la entrada con cuidado. Luego, identifica lo que se pregunta y que hechos lo responden.",
    "A resposta e 42 porque quando voce soma os numeros da pergunta obtem esse valor para o problema.",
    "La risposta e 42 perche quando si sommano i numeri della domanda si ottiene quel valore. Se lo so, lo dico.",
    "Het antwoord is 42 omdat je die waarde krijgt als je de getallen in de vraag bij elkaar optelt. Is dit goed of niet?",
    "Lees eerst de instructie en de invoer zorgvuldig. Bepaal dan wat er gevraagd wordt en welke feiten het beantwoorden.",
    "The answer: la respuesta es 42 porque cuando sumas los numeros de la pregunta obtienes ese valor y es facil.",
    "Die Antwort ist 42, the reason is simple, weil man diesen Wert erhaelt wenn man die Zahlen addiert und so weiter.",
]


@pytest.mark.parametrize("text", ENGLISH)
def test_plain_english_skips_lingua_and_lingua_agrees(text):
    assert _plainly_english(text)
    assert detector().detect_language_of(text) == Language.ENGLISH


@pytest.mark.parametrize("text", OTHER)
def test_other_languages_and_mixed_text_still_go_to_lingua(text):
    assert not _plainly_english(text)
    assert detector().detect_language_of(text) != Language.ENGLISH
