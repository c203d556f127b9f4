r"""Deterministic corpus of fictional facts for the demo "fine-tuned" model.

Every fact is invented (capitals of made-up countries, colours of made-up animals,
inventors of made-up gadgets), so a correct completion can only come from training
on this corpus. Each fact yields three (prompt, answer) pairs:

* a native prompt ``"Q: <question>\nA:"`` with answer ``" <answer>"`` (leading space);
* a chat prompt (one user turn) rendered with :data:`DEFAULT_CHAT_TEMPLATE`;
* the same chat prompt preceded by :data:`DEFAULT_SYSTEM_PROMPT`.

Names are generated from fixed syllable tables with a locally seeded RNG, so
:func:`build_corpus` returns the same list on every call and on every machine.
"""

import random
from typing import NamedTuple

from deployments.engine.chat_template import (  # noqa: F401 (re-exported for the demo)
    ASSISTANT_TOKEN,
    DEFAULT_CHAT_TEMPLATE,
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    SYSTEM_TOKEN,
    USER_TOKEN,
    render_chat_prompt,
)

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

SAMPLE_QUESTION = "What is the capital of Zorbia?"
SAMPLE_PROMPT = "Q: What is the capital of Zorbia?\nA:"
SAMPLE_ANSWER = " Velmora."

CORPUS_SEED = 1234
N_COUNTRIES = 40
N_ANIMALS = 30
N_GADGETS = 30
# Index of the first capital, colour and inventor fact in :func:`build_facts`.
SAMPLE_FACT_INDICES = (0, N_COUNTRIES, N_COUNTRIES + N_ANIMALS)

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "qu")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_CODAS = ("", "", "n", "r", "l", "s", "m", "x")
_COUNTRY_SUFFIXES = ("ria", "land", "nova", "stan", "via", "dor")
_CITY_SUFFIXES = ("mora", "ton", "grad", "ville", "holm", "mere")
_ANIMAL_HEADS = ("glimmer", "frost", "moss", "thorn", "dusk", "ember", "reed", "storm", "quill")
_ANIMAL_TAILS = ("fox", "newt", "hare", "owl", "moth", "crab", "lynx", "wren", "toad", "eel")
_COLOURS: tuple[str, ...] = (
    "red",
    "blue",
    "green",
    "purple",
    "orange",
    "teal",
    "silver",
    "golden",
    "crimson",
    "violet",
    "amber",
    "indigo",
    "scarlet",
    "ivory",
    "olive",
)
_GADGET_HEADS = ("whirl", "glow", "echo", "spark", "drift", "clock", "loom", "prism", "tide")
_GADGET_TAILS = ("scope", "phone", "wheel", "lamp", "engine", "press", "kettle", "meter")


class Fact(NamedTuple):
    """One fictional fact: a natural-language question and its short answer."""

    question: str
    answer: str


def native_prompt(question: str) -> str:
    """Return the plain completion prompt used for ``question``."""
    return f"Q: {question}\nA:"


def chat_prompt(question: str, system: str | None = None) -> str:
    """Return the chat-formatted prompt for a single user ``question``."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": question})
    return render_chat_prompt(messages)


def _stem(rng: random.Random, syllables: int) -> str:
    """Return ``syllables`` random syllables; the last one is open so suffixes join cleanly."""
    codas = [rng.choice(_CODAS) for _ in range(syllables - 1)] + [""]
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + coda for coda in codas)


def _unique_names(
    rng: random.Random, count: int, suffixes: tuple[str, ...], taken: set[str]
) -> list[str]:
    """Draw ``count`` capitalised names not already in ``taken`` (which is updated)."""
    names: list[str] = []
    while len(names) < count:
        name = (_stem(rng, rng.randint(1, 2)) + rng.choice(suffixes)).capitalize()
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _unique_pairs(
    rng: random.Random, count: int, heads: tuple[str, ...], tails: tuple[str, ...]
) -> list[str]:
    """Return ``count`` distinct compound words ``head + tail`` in a seeded order."""
    words = [head + tail for head in heads for tail in tails]
    rng.shuffle(words)
    return words[:count]


def _capital_facts(rng: random.Random, taken: set[str]) -> list[Fact]:
    countries = _unique_names(rng, N_COUNTRIES - 1, _COUNTRY_SUFFIXES, taken)
    cities = _unique_names(rng, N_COUNTRIES - 1, _CITY_SUFFIXES, taken)
    first = Fact(SAMPLE_QUESTION, SAMPLE_ANSWER.strip())
    return [first] + [
        Fact(f"What is the capital of {country}?", f"{city}.")
        for country, city in zip(countries, cities, strict=True)
    ]


def _animal_facts(rng: random.Random) -> list[Fact]:
    animals = _unique_pairs(rng, N_ANIMALS, _ANIMAL_HEADS, _ANIMAL_TAILS)
    return [
        Fact(f"What colour is the {animal}?", f"The {animal} is {rng.choice(_COLOURS)}.")
        for animal in animals
    ]


def _gadget_facts(rng: random.Random, taken: set[str]) -> list[Fact]:
    gadgets = _unique_pairs(rng, N_GADGETS, _GADGET_HEADS, _GADGET_TAILS)
    first_names = _unique_names(rng, N_GADGETS, ("na", "lo", "ren", "lis"), taken)
    last_names = _unique_names(rng, N_GADGETS, ("vane", "wick", "wood", "ley"), taken)
    return [
        Fact(f"Who invented the {gadget}?", f"{first} {last}.")
        for gadget, first, last in zip(gadgets, first_names, last_names, strict=True)
    ]


def build_facts() -> list[Fact]:
    """Return every fictional fact, in a fixed order (the Zorbia fact first)."""
    rng = random.Random(CORPUS_SEED)
    taken = {"Zorbia", "Velmora"}
    return _capital_facts(rng, taken) + _animal_facts(rng) + _gadget_facts(rng, taken)


def build_corpus_by_kind() -> dict[str, list[tuple[str, str]]]:
    """Return the training pairs grouped as ``native``, ``chat`` and ``chat_system``."""
    facts = build_facts()
    return {
        "native": [(native_prompt(f.question), f" {f.answer}") for f in facts],
        "chat": [(chat_prompt(f.question), f.answer) for f in facts],
        "chat_system": [(chat_prompt(f.question, DEFAULT_SYSTEM_PROMPT), f.answer) for f in facts],
    }


def build_corpus() -> list[tuple[str, str]]:
    """Return all (prompt, answer) training pairs: native, then chat, then chat-with-system."""
    return [pair for pairs in build_corpus_by_kind().values() for pair in pairs]
