"""Everyday English sentences for synthetic speech, built from templates and word lists.

Why templates: a speech-to-text dataset made offline needs thousands of distinct, natural
sentences so that train and eval never share a sentence, yet every word must be one a
recognizer writes literally. The lists below avoid digits, abbreviations, symbols, and words
with several common spellings; numbers are spelled as words and stay small (two to twelve),
because recognizers tend to write larger numbers, prices and clock times as digits.
"""

from __future__ import annotations

import random
import re
import string

#: Word lists a template draws from by ``{slot}`` name. A trailing digit in a slot name
#: (``{name2}``) draws again from the same list, never repeating the earlier pick.
# fmt: off
WORDS: dict[str, tuple[str, ...]] = {
    "name": (
        "David", "Maria", "Peter", "Laura", "Thomas", "Emma", "James", "Olivia", "Daniel",
        "Anna", "Robert", "Lucy", "George", "Helen", "Oliver", "Rachel", "Samuel", "Kevin",
        "Julia", "Martin", "Alice", "Henry", "Grace", "Simon", "Victoria", "Edward", "Nora",
        "Frank", "Linda", "Oscar",
    ),
    "city": (
        "London", "Paris", "Boston", "Chicago", "Dublin", "Madrid", "Berlin", "Sydney",
        "Toronto", "Denver", "Seattle", "Glasgow", "Rome", "Vienna", "Houston", "Miami",
    ),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "daypart": ("morning", "afternoon", "evening"),
    "weather": (
        "sunny", "cloudy", "windy", "rainy", "foggy", "cold", "warm", "hot", "dry", "stormy",
        "freezing", "mild",
    ),
    "weather_noun": (
        "rain", "snow", "heavy rain", "light snow", "strong wind", "thunder", "fog", "sunshine",
        "a few showers", "clear skies",
    ),
    "hour": (
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ),
    "count": (
        "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ),
    "lr": ("left", "right"),
    "landmark": (
        "bank", "library", "post office", "train station", "museum", "bakery", "church",
        "bus stop", "hospital", "park", "school", "bridge", "pharmacy", "cinema", "hotel",
    ),
    "street": (
        "Maple Street", "Station Road", "Church Lane", "King Street", "Park Avenue",
        "River Road", "Hill Street", "Garden Lane", "Market Street", "Oak Avenue",
    ),
    "distance": (
        "two blocks", "three blocks", "a few minutes", "about five minutes", "one more block",
        "until the traffic lights", "to the end of the road",
    ),
    "shop": (
        "supermarket", "market", "corner shop", "bookshop", "hardware store", "shoe shop",
        "bakery", "flower shop", "toy shop", "grocery store",
    ),
    "item_plural": (
        "apples", "oranges", "bananas", "eggs", "lemons", "tomatoes", "potatoes", "onions",
        "carrots", "candles", "batteries", "light bulbs", "envelopes", "pencils", "notebooks",
        "towels", "plates", "cups",
    ),
    "mass_item": (
        "milk", "bread", "butter", "cheese", "rice", "flour", "sugar", "coffee", "tea",
        "soap", "honey", "juice",
    ),
    "color": ("red", "blue", "green", "black", "white", "yellow", "brown", "grey", "purple"),
    "clothing": ("jacket", "scarf", "sweater", "hat", "dress", "shirt", "coat", "skirt"),
    "animal_plural": (
        "ducks", "horses", "sheep", "cows", "rabbits", "dogs", "cats", "birds", "goats",
        "chickens",
    ),
    "place": ("garden", "field", "park", "yard", "barn", "forest", "meadow", "village"),
    "workplace": (
        "hospital", "library", "bank", "bakery", "museum", "school", "hotel", "post office",
        "restaurant", "airport",
    ),
    "appt": ("dentist", "doctor", "hair", "vet", "bank", "nail"),
    "meeting": ("the meeting", "our call", "the interview", "the lesson", "dinner", "the visit"),
    "when": (
        "this morning", "last night", "yesterday", "an hour ago", "on Monday", "last week",
        "after lunch", "this afternoon",
    ),
    "future": (
        "tomorrow", "tonight", "this weekend", "next week", "on Friday", "after work",
        "before lunch", "later today",
    ),
    "onoff": ("on", "off"),
    "device": (
        "lights", "heater", "fan", "television", "radio", "oven", "washing machine",
        "dishwasher", "air conditioner", "coffee machine", "printer", "alarm",
    ),
    "gadget": ("phone", "laptop", "tablet", "camera", "headphones", "watch", "speaker"),
    "room": ("kitchen", "bedroom", "living room", "bathroom", "hallway", "office", "garage"),
    "mode": ("low", "high", "quiet mode", "energy saving mode", "night mode", "full power"),
    "dish": (
        "pasta", "soup", "chicken curry", "fried rice", "vegetable stew", "fish and chips",
        "pancakes", "roast chicken", "tomato soup", "a big salad", "pizza", "noodles",
    ),
    "meal": ("breakfast", "lunch", "dinner"),
    "side": ("rice", "salad", "bread", "potatoes", "green beans", "fresh fruit"),
    "vegetable_plural": ("carrots", "peppers", "mushrooms", "onions", "beans", "peas", "herbs"),
    "condiment": ("salt", "pepper", "butter", "sugar", "mustard", "olive oil", "bread"),
    "drink": ("tea", "coffee", "orange juice", "water", "lemonade", "hot chocolate", "milk"),
    "vehicle": ("train", "bus", "ferry", "tram", "coach", "last train", "first bus"),
}
# fmt: on

#: Sentence templates by everyday domain; each yields many sentences of about 5-15 words.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "weather": (
        "It will be {weather} in {city} on {day}.",
        "The forecast for {day} says {weather_noun} in the {daypart}.",
        "Is it going to be {weather} in {city} {future}?",
        "We expect {weather_noun} across {city} {future}.",
        "It feels {weather} outside this {daypart} in {city}.",
    ),
    "time": (
        "The {vehicle} leaves at {clock} every {day}.",
        "Please wake me up at {clock} tomorrow morning.",
        "The shop opens at {clock} and closes early on {day}.",
        "My {vehicle} to {city} was late by {count} minutes.",
    ),
    "directions": (
        "Turn {lr} at the {landmark} and walk {distance}.",
        "The {shop} is next to the {landmark} on {street}.",
        "Go straight past the {landmark} and then turn {lr}.",
        "How do I get to the {landmark} from here?",
        "The {landmark} is on {street} just after the {landmark2}.",
    ),
    "shopping": (
        "I need to buy {count} {item_plural} and some {mass_item}.",
        "{name} bought {count} {item_plural} at the {shop}.",
        "Do you have this {clothing} in {color} at the {shop}?",
        "The {color} {clothing} is on sale at the {shop} this week.",
        "Remember to pick up {mass_item} and {mass_item2} on the way home.",
    ),
    "numbers": (
        "There are {count} {animal_plural} in the {place}.",
        "{name} has {count} brothers and {count2} sisters.",
        "Please add {count} more {item_plural} to the list.",
        "We counted {count} {animal_plural} near the {place} {when}.",
    ),
    "names": (
        "{name} and {name2} are meeting at the {landmark} {future}.",
        "Have you seen {name} since {day}?",
        "My friend {name} works at the {workplace} in {city}.",
        "{name} called {name2} about the trip to {city}.",
    ),
    "appointments": (
        "{name} has a {appt} appointment on {day} at {clock}.",
        "Can we move {meeting} with {name} to {day} {daypart}?",
        "Your {appt} appointment is confirmed for next {day}.",
        "I am sorry but I have to cancel {meeting} on {day}.",
    ),
    "devices": (
        "Turn {onoff} the {device} in the {room}.",
        "Set the {device} to {mode} before you leave.",
        "The {device} in the {room} stopped working {when}.",
        "Please charge my {gadget} before the trip to {city}.",
        "I left my {gadget} in the {room} {when}.",
    ),
    "food": (
        "I would like {dish} with {side} please.",
        "We are having {dish} for {meal} {future}.",
        "{name} cooked {dish} with fresh {vegetable_plural}.",
        "Could you pass the {condiment} please?",
        "Can I have a cup of {drink} with my {meal}?",
    ),
}

_SLOT = re.compile(r"\{([a-z_]+?)(\d?)\}")


def _clock(rng: random.Random) -> str:
    """A spoken clock time; 'half past' forms keep recognizers from writing digits."""
    hour = rng.choice(WORDS["hour"])
    return rng.choice(("half past {}", "quarter past {}", "quarter to {}")).format(hour)


def _fill(template: str, rng: random.Random) -> str:
    picked: dict[str, list[str]] = {}

    def draw(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot == "clock":
            return _clock(rng)
        earlier = picked.setdefault(slot, [])
        choices = [w for w in WORDS[slot] if w not in earlier] or list(WORDS[slot])
        word = rng.choice(choices)
        earlier.append(word)
        return word

    sentence = _SLOT.sub(draw, template)
    return sentence[0].upper() + sentence[1:]


def all_templates() -> list[tuple[str, str]]:
    """Every (domain, template) pair, in a fixed order."""
    return [(domain, t) for domain, ts in TEMPLATES.items() for t in ts]


def sample_sentences(n: int, rng: random.Random, max_tries_per_sentence: int = 50) -> list[str]:
    """Return up to ``n`` distinct sentences from templates drawn uniformly at random.

    Fewer than ``n`` come back only if the templates cannot make that many distinct sentences
    (tens of thousands are possible), so callers can count on disjoint train/eval text.
    """
    templates = all_templates()
    seen: set[str] = set()
    out: list[str] = []
    tries = 0
    while len(out) < n and tries < n * max_tries_per_sentence:
        tries += 1
        _, template = templates[rng.randrange(len(templates))]
        sentence = _fill(template, rng)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def normalize(text: str) -> str:
    """Lowercase and drop punctuation: the form in which two transcripts are compared."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation.replace("'", "")))
    return " ".join(text.split())
