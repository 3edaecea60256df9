"""What people say to a voice assistant, with SLURP-style labels: a small template grammar.

Why: spoken-language understanding (scenario, action and entities from speech) needs labelled
commands in more than one language, and SLURP and MASSIVE cannot be downloaded here. Templates
give labels for free: every entity is a slot, so its value occurs verbatim in the text, spelled
the way a recognizer writes it (lowercase, numbers and times as words, no punctuation).

Grammar:

* ``TEMPLATES[language][intent]`` lists phrasings; the intent is ``scenario_action`` (SLURP's
  names, split at the first underscore). The **last** phrasing of every intent is held out:
  only eval utterances use it, so eval measures new wordings, not memorized ones.
* ``(a|b|)`` picks one option (the empty one drops the words); options may hold slots.
* ``{type}`` is an entity of that type drawn from ``FILLERS[language][type]``; ``{type2}`` is a
  second one of the same type with another value; ``{type:pool}`` draws from another list, e.g.
  ``{place_name:country}`` for the countries that "the capital of" needs.
* Every ``FILLER_HOLDOUT_EVERY``-th value of each list is held out of training, so eval also
  meets entity values that training never showed (as in SLURP's test set). Lists that feed the
  same entity type share no value, so a held-out value is held out everywhere.

Entity types and scenario/action labels are English in every language, as in MASSIVE; the
German templates cover every scenario (most intents), written as a German speaker would say
them, with values chosen so that articles and prepositions agree with every value of a list.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from audiolora.builtin.synth.text import WORDS as EVERYDAY_WORDS

#: Languages with templates; English has every intent, the others a subset.
LANGUAGES = ("en", "de")
#: Every n-th value of each filler list (the n-th, 2n-th, ...) is used by eval utterances only.
FILLER_HOLDOUT_EVERY = 4
SPLITS = ("train", "eval")

_HOURS_EN = EVERYDAY_WORDS["hour"]
_DAYS_EN = tuple(d.lower() for d in EVERYDAY_WORDS["day"])
_HOURS_DE = (
    "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "elf",
    "zwölf",
)  # fmt: skip
_DAYS_DE = ("montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonntag")

# fmt: off
FILLERS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "time": (
            *(f"{h} am" for h in _HOURS_EN), *(f"{h} pm" for h in _HOURS_EN),
            *(f"half past {h}" for h in _HOURS_EN), *(f"quarter to {h}" for h in _HOURS_EN),
            *(f"{h} o'clock" for h in _HOURS_EN), "noon", "midnight",
        ),
        "date": (
            "today", "tomorrow", "the day after tomorrow", "this weekend", *_DAYS_EN,
            *(f"next {d}" for d in _DAYS_EN), "this friday", "this saturday",
        ),
        "calendar_day": (
            "the first of may", "the third of june", "the tenth of july", "the twentieth of march",
            "the second of august", "the fifth of october", "the twelfth of december",
            "the fourth of january", "the ninth of april", "the fifteenth of september",
            "the sixth of november", "the eighth of february",
        ),
        "general_frequency": (
            "every day", "every weekday", "every morning", "on weekdays", "every monday",
            "at weekends", "every other day", "twice a week",
        ),
        "place_name": tuple(c.lower() for c in EVERYDAY_WORDS["city"]),
        "country": (
            "france", "spain", "italy", "canada", "japan", "australia", "norway", "portugal",
            "brazil", "egypt", "poland", "ireland",
        ),
        "local": (
            "the airport", "the train station", "the city centre", "the hospital", "the office",
            "the stadium", "the hotel", "the university",
        ),
        "road": (
            "the motorway", "the ring road", "main street", "the bridge", "the high street",
            "the bypass", "the tunnel", "the coast road",
        ),
        "person": tuple(n.lower() for n in EVERYDAY_WORDS["name"]),
        "relation": (
            "mom", "dad", "boss", "sister", "brother", "wife", "husband", "grandma", "teacher",
            "landlord",
        ),
        "artist_name": (
            "taylor swift", "the beatles", "adele", "ed sheeran", "queen", "bob marley",
            "coldplay", "elton john", "madonna", "abba", "nirvana", "shakira", "frank sinatra",
            "daft punk", "miles davis", "the rolling stones",
        ),
        "song_name": (
            "yellow submarine", "bohemian rhapsody", "hey jude", "dancing queen", "let it be",
            "shape of you", "hotel california", "imagine", "wonderwall", "purple rain",
            "thriller", "hallelujah", "rolling in the deep", "fly me to the moon",
            "three little birds", "clocks",
        ),
        "music_genre": (
            "jazz", "rock", "classical", "hip hop", "country", "pop", "blues", "reggae", "soul",
            "techno", "folk", "heavy metal",
        ),
        "radio_name": (
            "radio one", "jazz fm", "classic fm", "radio two", "kiss fm", "capital fm",
            "heart radio", "the world service", "radio four", "smooth radio",
        ),
        "podcast_name": (
            "the daily", "serial", "radiolab", "this american life", "freakonomics",
            "hardcore history", "the moth", "planet money", "science weekly",
            "no such thing as a fish",
        ),
        "house_place": (
            "kitchen", "bedroom", "living room", "bathroom", "hallway", "office", "garage",
            "dining room", "attic", "basement", "nursery", "study",
        ),
        "change_amount": (
            "ten percent", "twenty percent", "thirty percent", "forty percent", "fifty percent",
            "half", "sixty percent", "a quarter",
        ),
        "color_type": (
            "red", "blue", "green", "yellow", "purple", "orange", "pink", "warm white",
            "cool white", "turquoise",
        ),
        "device_type": (
            "vacuum cleaner", "robot vacuum", "hoover", "floor mop", "window robot",
            "carpet cleaner", "pool cleaner", "steam mop",
        ),
        "coffee_type": (
            "latte", "cappuccino", "macchiato", "flat white", "black coffee", "cortado", "mocha",
            "double espresso",
        ),
        "transport_type": (
            "train", "bus", "coach", "ferry", "tram", "plane", "night bus", "subway",
        ),
        "event_name": (
            "dentist appointment", "team meeting", "doctor's appointment", "yoga class",
            "job interview", "haircut", "piano lesson", "book club", "birthday party",
            "parents evening", "car service", "project review",
        ),
        "weather_descriptor": (
            "sunny", "windy", "cold", "hot", "cloudy", "foggy", "warm", "freezing", "stormy",
            "humid",
        ),
        "weather_verb": ("rain", "snow", "hail", "drizzle"),
        "list_name": (
            "shopping", "to do", "grocery", "packing", "christmas", "reading", "chores",
            "birthday", "wish", "holiday",
        ),
        "definition_word": (
            "serendipity", "ubiquitous", "ephemeral", "photosynthesis", "algorithm", "nostalgia",
            "entropy", "melancholy", "democracy", "inflation", "metaphor", "gravity",
        ),
        "currency_name": (
            "euro", "dollar", "pound", "yen", "swiss franc", "rupee", "canadian dollar", "peso",
        ),
        "currency_plural": (
            "euros", "dollars", "pounds", "swiss francs", "rupees", "canadian dollars", "pesos",
            "kroner",
        ),
        "food_type": (
            "pancakes", "lasagna", "chicken curry", "banana bread", "risotto", "tomato soup",
            "apple pie", "fried rice", "guacamole", "chocolate cake", "pad thai", "beef stew",
            "sushi", "pizza", "tacos", "an omelette",
        ),
        "business_name": (
            "pizza hut", "dominos", "mcdonalds", "burger king", "nandos", "the golden dragon",
            "wagamama", "five guys", "taco bell", "the curry house", "the noodle bar",
            "papa johns",
        ),
        "meal_type": ("breakfast", "lunch", "dinner", "brunch"),
        "news_topic": (
            "politics", "sports", "technology", "science", "the economy", "football",
            "business", "health", "the elections", "climate change", "entertainment",
            "the stock market",
        ),
    },
    "de": {
        "time": (
            *(f"{'ein' if h == 'eins' else h} uhr" for h in _HOURS_DE),
            *(f"halb {h}" for h in _HOURS_DE), *(f"viertel nach {h}" for h in _HOURS_DE),
            *(f"viertel vor {h}" for h in _HOURS_DE), "mitternacht", "zwölf uhr mittags",
        ),
        "date": (
            "heute", "morgen", "übermorgen", *(f"am {d}" for d in _DAYS_DE),
            *(f"nächsten {d}" for d in _DAYS_DE), "am wochenende", "am ersten mai",
            "am dritten juni", "am zehnten juli", "am zwanzigsten august",
        ),
        "place_name": (
            "berlin", "münchen", "hamburg", "köln", "frankfurt", "wien", "zürich", "dresden",
            "leipzig", "stuttgart", "bremen", "hannover", "nürnberg", "paris", "salzburg",
            "freiburg",
        ),
        "country": (
            "frankreich", "spanien", "italien", "kanada", "japan", "australien", "norwegen",
            "portugal", "brasilien", "ägypten", "polen", "irland",
        ),
        "local": (
            "flughafen", "bahnhof", "hauptbahnhof", "krankenhaus", "rathaus", "hotel", "stadion",
            "büro",
        ),
        "person": (
            "anna", "thomas", "lukas", "sophie", "jonas", "lena", "felix", "marie", "paul",
            "julia", "max", "laura", "stefan", "katrin", "jan", "petra",
        ),
        "relation": ("chef", "bruder", "vater", "onkel", "opa", "kollegen", "nachbarn", "sohn"),
        "artist_name": (
            "helene fischer", "sportfreunde stiller", "nena", "herbert grönemeyer", "rammstein",
            "kraftwerk", "peter fox", "adele", "the beatles", "udo lindenberg", "mark forster",
            "silbermond",
        ),
        "song_name": (
            "atemlos durch die nacht", "an tagen wie diesen", "neunundneunzig luftballons",
            "männer", "haus am see", "bohemian rhapsody", "yellow submarine", "major tom",
            "das model", "chöre", "irgendwie irgendwo irgendwann", "junge",
        ),
        "music_genre": ("jazz", "rock", "klassik", "schlager", "hip hop", "techno", "pop", "blues"),
        "radio_name": (
            "deutschlandfunk", "radio eins", "bayern drei", "antenne bayern", "einslive",
            "ndr info", "radio bremen", "swr drei",
        ),
        "podcast_name": (
            "fest und flauschig", "lage der nation", "gemischtes hack", "zeit verbrechen",
            "baywatch berlin", "das politikteil", "hotel matze", "eine stunde history",
        ),
        # All neuter, so "im ..." and "das ..." agree with every value.
        "house_place": (
            "wohnzimmer", "schlafzimmer", "badezimmer", "arbeitszimmer", "kinderzimmer",
            "esszimmer", "büro", "gästezimmer",
        ),
        "color_type": ("rot", "blau", "grün", "gelb", "lila", "orange", "rosa", "warmweiß"),
        # All masculine: "den ...".
        "device_type": (
            "staubsauger", "saugroboter", "wischroboter", "fensterroboter", "poolroboter",
            "dampfreiniger", "akkusauger", "bodenwischer",
        ),
        # All masculine: "den ...", "im ...".
        "transport_type": (
            "zug", "bus", "fernbus", "nachtzug", "intercity", "regionalzug", "schnellzug",
            "eurocity",
        ),
        # All masculine: "den ...", "mein ...".
        "event_name": (
            "zahnarzttermin", "arzttermin", "friseurtermin", "yogakurs", "elternabend",
            "tennisunterricht", "lauftreff", "sprachkurs", "kundentermin", "teamabend",
        ),
        "weather_descriptor": (
            "regen", "schnee", "sonne", "gewitter", "nebel", "sturm", "glatteis", "hagel",
        ),
        # All feminine: "die ...", "meiner ...".
        "list_name": (
            "einkaufsliste", "to do liste", "packliste", "geburtstagsliste", "wunschliste",
            "leseliste", "putzliste", "weihnachtsliste",
        ),
        "definition_word": (
            "fernweh", "gemütlichkeit", "schadenfreude", "nachhaltigkeit", "fotosynthese",
            "algorithmus", "demokratie", "zeitgeist", "wanderlust", "inflation",
        ),
        "food_type": (
            "pfannkuchen", "lasagne", "kartoffelsalat", "apfelstrudel", "gulasch", "pizza",
            "sushi", "nudeln", "currywurst", "käsespätzle", "bratkartoffeln", "schnitzel",
        ),
        "business_name": (
            "pizza hut", "burger king", "mcdonalds", "vapiano", "nordsee", "pizzeria da mario",
            "asia haus", "dönerladen am markt",
        ),
        "news_topic": (
            "politik", "sport", "wirtschaft", "fußball", "technik", "wissenschaft", "kultur",
            "gesundheit", "börse", "klimawandel",
        ),
    },
}

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "alarm_set": (
            "wake me up at {time} {date}",
            "(set|create|make) an alarm for {time}",
            "i need an alarm at {time} {date}",
            "set my alarm to {time} {general_frequency}",
            "can you get me up at {time} {date}",
        ),
        "alarm_remove": (
            "(cancel|delete|remove) (my|the) alarm (for|at) {time}",
            "turn off the {time} alarm",
            "i don't need the alarm for {date} anymore",
            "get rid of the alarm i set for {time}",
        ),
        "alarm_query": (
            "what alarms do i have (set |)for {date}",
            "(is there|do i have) an alarm (set |)for {time}",
            "(show|list) (me |)(all |)my alarms",
            "when will my alarm (ring|go off) {date}",
        ),
        "weather_query": (
            "what's the weather (like |)in {place_name} {date}",
            "will it {weather_descriptor:weather_verb} {date}",
            "is it going to be {weather_descriptor} in {place_name} {date}",
            "(tell me|give me) the (weather |)forecast for {place_name}",
            "should i expect it to be {weather_descriptor} {date}",
        ),
        "calendar_set": (
            "add (my |){event_name} to my calendar for {date} at {time}",
            "schedule my {event_name} for {date}",
            "remind me about the {event_name} at {time}",
            "(put|add) a meeting with {person} in my calendar for {date}",
            "block out {date} for the {event_name}",
        ),
        "calendar_query": (
            "what's on my calendar {date}",
            "(when|what time) is my {event_name}",
            "am i free {date} at {time}",
            "what meetings do i have with {person}",
            "is there anything in my diary for {date}",
        ),
        "calendar_remove": (
            "(cancel|delete|remove) my {event_name} {date}",
            "clear my calendar for {date}",
            "remove the meeting with {person} from my calendar",
            "take the {event_name} off my schedule",
        ),
        "play_music": (
            "play {song_name} by {artist_name}",
            "(put on|play) some {music_genre} (music|)",
            "i want to (hear|listen to) {artist_name}",
            "play (the song |){song_name}",
            "could you (put on|start) something by {artist_name}",
        ),
        "play_radio": (
            "(play|put on|tune in to) {radio_name}",
            "switch the radio (over |)to {radio_name}",
            "i want to listen to {radio_name}",
            "can i hear {radio_name} (please|on the radio)",
        ),
        "play_podcasts": (
            "play the (latest|next|newest) episode of {podcast_name}",
            "(resume|continue) {podcast_name} (from where i stopped|)",
            "play the podcast {podcast_name}",
            "i'd like to catch up on {podcast_name}",
        ),
        "iot_hue_lighton": (
            "turn on the lights in the {house_place}",
            "switch the {house_place} lights on",
            "lights on in the {house_place} (please|)",
            "can you light up the {house_place}",
        ),
        "iot_hue_lightoff": (
            "turn off the lights in the {house_place}",
            "switch off the {house_place} lights",
            "(kill|shut off) the lights in the {house_place}",
            "make it dark in the {house_place}",
        ),
        "iot_hue_lightdim": (
            "dim the lights in the {house_place}",
            "(lower|reduce) the (brightness|lights) to {change_amount}",
            "set the {house_place} lights to {change_amount}",
            "make the {house_place} (a bit |a little |)darker",
        ),
        "iot_hue_lightchange": (
            "(change|turn|make) the lights (in the {house_place} |){color_type}",
            "set the {house_place} lights to {color_type}",
            "i want {color_type} light in the {house_place}",
            "switch the light colour to {color_type}",
        ),
        "iot_cleaning": (
            "(start|turn on|run) the {device_type}",
            "(vacuum|clean) the {house_place}",
            "have the {device_type} clean the {house_place}",
            "the {house_place} (floor |)needs (a clean|cleaning)",
        ),
        "iot_coffee": (
            "make me a {coffee_type}",
            "i'd like a {coffee_type} (please|)",
            "brew a {coffee_type} at {time}",
            "can i get a {coffee_type} from the machine",
        ),
        "transport_ticket": (
            "book a {transport_type} ticket (from {place_name} |)to {place_name2} "
            "for {date}",
            "i need a {transport_type} ticket to {place_name} {date}",
            "get me (a ticket|tickets) for the {transport_type} to {place_name}",
            "reserve a seat on the {transport_type} to {place_name} {date}",
        ),
        "transport_taxi": (
            "(book|call|get) me a taxi to {place_name:local}",
            "i need a (taxi|cab) at {time}",
            "order a taxi for {time} (please|)",
            "can you send a cab to pick me up at {time}",
        ),
        "transport_query": (
            "when is the next {transport_type} to {place_name}",
            "what time does the {transport_type} (to {place_name} |)leave",
            "is the {time} {transport_type} to {place_name} on time",
            "how long does the {transport_type} take to get to {place_name}",
        ),
        "transport_traffic": (
            "how is the traffic (on the way |)to {place_name:local}",
            "is there (a lot of |any |)traffic on {place_name:road}",
            "any (traffic jams|delays) (on|near) {place_name:road}",
            "will i get stuck in traffic going to {place_name:local}",
        ),
        "email_sendemail": (
            "(send|write) an email to {person} (saying i'll be late|about the report)",
            "email my {relation} (that i'm running late|about the weekend)",
            "send {person} a (quick |)email about the {event_name}",
            "drop {person} a line (by email |)(saying thanks|about dinner)",
        ),
        "email_query": (
            "(do i have|are there) (any |)new emails (from {person}|)",
            "check my (inbox|email|emails)",
            "read (me |)the (latest|last) email from my {relation}",
            "has {person} (emailed|written to) me (back|)",
        ),
        "email_addcontact": (
            "save {person} as a new contact",
            "add {person} to my contacts",
            "create a contact for my {relation}",
            "put {person} in my address book",
        ),
        "lists_createoradd": (
            "add (milk|eggs|bread|batteries|coffee) to my {list_name} list",
            "(create|make|start) a (new |){list_name} list",
            "put (call the bank|pick up the dry cleaning|book flights) on my {list_name} list",
            "i need (bread|milk|apples) on my {list_name} list",
        ),
        "lists_remove": (
            "(remove|delete|take) (milk|eggs|bread) (from|off) my {list_name} list",
            "delete my {list_name} list",
            "clear (everything from |)the {list_name} list",
            "(cross|scratch) (eggs|milk|butter) off the {list_name} list",
        ),
        "lists_query": (
            "what's on my {list_name} list",
            "read me my {list_name} list",
            "(how many|what) items are (on|in) the {list_name} list",
            "do i have (milk|eggs) on my {list_name} list (already|)",
        ),
        "datetime_query": (
            "what time is it in {place_name}",
            "what's the date {date}",
            "what day (of the week |)is {date:calendar_day}",
            "(tell me|do you know) the (local |)time in {place_name}",
        ),
        "datetime_convert": (
            "what is {time} (here |)in {place_name} time",
            "convert {time} to {place_name} time",
            "if it's {time} here what time is it in {place_name}",
        ),
        "qa_factoid": (
            "what is the capital of {place_name:country}",
            "how many people live in {place_name}",
            "(how far is it|what is the distance) from {place_name} to {place_name2}",
            "who (wrote|sang) {song_name}",
            "which country is {place_name} in",
        ),
        "qa_definition": (
            "what does {definition_word} mean",
            "(define|give me the definition of) {definition_word}",
            "what is the meaning of (the word |){definition_word}",
            "explain the word {definition_word} (to me|)",
        ),
        "qa_currency": (
            "what's the exchange rate (between|from) {currency_name} (and|to) {currency_name2}",
            "how much is a {currency_name} (worth |)in {currency_name2:currency_plural}",
            "convert (ten|fifty|a hundred) {currency_name:currency_plural} (into|to) "
            "{currency_name2:currency_plural}",
            "how strong is the {currency_name} against the {currency_name2}",
        ),
        "cooking_recipe": (
            "(give me|find) a recipe for {food_type}",
            "how do i (make|cook) {food_type}",
            "what do i need to make {food_type}",
            "(show|teach) me how to prepare {food_type}",
        ),
        "takeaway_order": (
            "order {food_type} from {business_name}",
            "i want to order {food_type} for {meal_type}",
            "get me {food_type} (for delivery|delivered to my house)",
            "can you get {food_type} delivered from {business_name}",
        ),
        "takeaway_query": (
            "(where is|how long until) my (order|food) from {business_name}",
            "does {business_name} deliver (here|to my area)",
            "is {business_name} (still |)open (now|)",
            "has my order from {business_name} (left|been sent out) yet",
        ),
        "news_query": (
            "what's the latest news (on|about) {news_topic}",
            "(tell me|read me) the {news_topic} (news|headlines)",
            "any news from {place_name}",
            "what's happening in {news_topic} (right now|at the moment)",
        ),
        "general_joke": (
            "tell me a (joke|funny joke|good joke|silly joke)",
            "(do you know|have you got) any (good |funny |)jokes",
            "make me laugh (please|)",
            "i'd (love|like) to hear a (joke|funny story)",
        ),
        "audio_volume_up": (
            "(turn|crank) (it|the volume|the music) up",
            "(make it|make the music|play it) louder",
            "increase the volume (a bit|a little|)",
            "(i can't hear it|it's too quiet) (please|) turn it up",
        ),
        "audio_volume_mute": (
            "(mute|silence) (the speaker|the music|everything)",
            "(be quiet|stop talking) (for a while|now|)",
            "turn the sound off",
            "no (sound|noise) (please|for now)",
        ),
        "music_likeness": (
            "i (really |)(like|love|enjoy) {artist_name}",
            "(save|remember) that i like {music_genre}",
            "{song_name} is (one of my favourite songs|my favourite song)",
            "i'm a big fan of {artist_name}",
        ),
        "music_query": (
            "who sings {song_name}",
            "when did {artist_name} release {song_name}",
            "what (song|track) is (this|playing)",
            "which album is {song_name} (on|from)",
        ),
    },
    "de": {
        "alarm_set": (
            "weck mich {date} um {time}",
            "stell (mir |)einen wecker (für|auf) {time}",
            "ich brauche einen wecker um {time}",
            "kannst du mich {date} um {time} wecken",
        ),
        "alarm_remove": (
            "(lösch|entferne) den wecker (für|um) {time}",
            "mach den wecker für {time} aus",
            "ich brauche den wecker um {time} nicht mehr",
        ),
        "alarm_query": (
            "welche wecker habe ich {date}",
            "ist (ein|mein) wecker für {time} gestellt",
            "wann klingelt mein wecker {date}",
        ),
        "weather_query": (
            "wie wird das wetter {date} in {place_name}",
            "gibt es {date} {weather_descriptor} in {place_name}",
            "wie (warm|kalt) wird es {date}",
            "brauche ich {date} einen regenschirm in {place_name}",
        ),
        "calendar_set": (
            "trag den {event_name} {date} um {time} ein",
            "erinnere mich {date} an den {event_name}",
            "plane ein treffen mit {person} {date} um {time}",
            "setz den {event_name} {date} in meinen kalender",
        ),
        "calendar_query": (
            "was steht {date} in meinem kalender",
            "wann ist mein {event_name}",
            "habe ich {date} um {time} schon (etwas|was) vor",
        ),
        "calendar_remove": (
            "lösch den {event_name} {date}",
            "sag das treffen mit {person} ab",
            "streich den {event_name} aus meinem kalender",
        ),
        "play_music": (
            "spiel {song_name} von {artist_name}",
            "spiel (etwas|musik|was) von {artist_name}",
            "ich will {song_name} hören",
            "leg (mal |){artist_name} auf",
        ),
        "play_radio": (
            "spiel {radio_name}",
            "schalt (mal |){radio_name} ein",
            "ich möchte {radio_name} hören",
        ),
        "play_podcasts": (
            "spiel die neueste folge von {podcast_name}",
            "spiel den podcast {podcast_name}",
            "mach mit {podcast_name} weiter",
        ),
        "iot_hue_lighton": (
            "mach das licht im {house_place} an",
            "schalte das licht im {house_place} ein",
            "(bitte |)licht an im {house_place}",
        ),
        "iot_hue_lightoff": (
            "mach das licht im {house_place} aus",
            "schalte (die lampen|das licht) im {house_place} aus",
            "im {house_place} (soll es|bitte) dunkel (sein|werden)",
        ),
        "iot_hue_lightchange": (
            "stell das licht im {house_place} auf {color_type}",
            "mach das licht {color_type}",
            "ändere die lichtfarbe auf {color_type}",
        ),
        "iot_cleaning": (
            "starte den {device_type}",
            "(saug|putz) (bitte |)das {house_place}",
            "der {device_type} soll das {house_place} sauber machen",
        ),
        "transport_ticket": (
            "buch mir eine fahrkarte nach {place_name} {date}",
            "ich brauche ein ticket für den {transport_type} nach {place_name}",
            "reservier mir einen platz im {transport_type} nach {place_name}",
        ),
        "transport_taxi": (
            "ruf mir ein taxi (für|um) {time}",
            "bestell ein taxi zum {place_name:local}",
            "ich brauche um {time} ein taxi",
        ),
        "transport_query": (
            "wann fährt der nächste {transport_type} nach {place_name}",
            "hat der {transport_type} nach {place_name} verspätung",
            "wie lange braucht der {transport_type} bis {place_name}",
        ),
        "email_sendemail": (
            "schick {person} eine email (dass ich später komme|wegen des treffens|)",
            "schreib (eine mail|eine email) an meinen {relation}",
            "sende {person} eine nachricht per email",
        ),
        "email_query": (
            "habe ich neue emails von {person}",
            "lies mir die letzte email von {person} vor",
            "hat {person} mir (schon |)geschrieben",
        ),
        "lists_createoradd": (
            "setz (milch|eier|brot|butter) auf die {list_name}",
            "erstelle eine neue {list_name}",
            "schreib (äpfel|kaffee|nudeln) auf meine {list_name}",
        ),
        "lists_remove": (
            "(lösch|streich) (milch|eier|brot) von der {list_name}",
            "lösche die {list_name}",
            "nimm (milch|eier) von meiner {list_name} (runter|)",
        ),
        "lists_query": (
            "was steht auf meiner {list_name}",
            "lies mir die {list_name} vor",
            "wie viele sachen sind auf der {list_name}",
        ),
        "datetime_query": (
            "wie spät ist es in {place_name}",
            "welches datum haben wir {date}",
            "wie viel uhr ist es gerade in {place_name}",
        ),
        "qa_factoid": (
            "was ist die hauptstadt von {place_name:country}",
            "wie viele einwohner hat {place_name}",
            "wie weit ist es von {place_name} nach {place_name2}",
        ),
        "qa_definition": (
            "was bedeutet {definition_word}",
            "was ist die bedeutung von {definition_word}",
            "erklär mir das wort {definition_word}",
        ),
        "cooking_recipe": (
            "gib mir ein rezept für {food_type}",
            "wie mache ich {food_type}",
            "was brauche ich für {food_type}",
        ),
        "takeaway_order": (
            "bestell mir {food_type} (von|bei) {business_name}",
            "ich möchte {food_type} bestellen",
            "lass uns {food_type} liefern",
        ),
        "takeaway_query": (
            "wann kommt meine bestellung von {business_name}",
            "ist meine bestellung (von|bei) {business_name} schon unterwegs",
            "liefert {business_name} auch hierher",
        ),
        "news_query": (
            "was gibt es neues zum thema {news_topic}",
            "lies mir die nachrichten über {news_topic} vor",
            "gibt es (aktuelle|neue) meldungen über {news_topic}",
        ),
        "general_joke": (
            "erzähl mir einen (witz|guten witz|lustigen witz)",
            "kennst du (einen|noch einen) (witz|guten witz)",
            "bring mich (bitte |)zum lachen",
        ),
        "audio_volume_up": (
            "mach (das|die musik|es) lauter",
            "(dreh|stell) die lautstärke (hoch|höher|rauf)",
            "kannst du (es |die musik |)(bitte |)lauter machen",
        ),
        "audio_volume_mute": (
            "(schalte|mach) den ton aus",
            "(bitte |)stumm schalten",
            "sei (bitte |)(still|leise)",
        ),
        "music_likeness": (
            "ich (mag|liebe) {artist_name}",
            "merk dir dass ich {music_genre} mag",
            "ich bin ein großer fan von {artist_name}",
        ),
        "music_query": (
            "wer singt {song_name}",
            "welches lied läuft (gerade|da)",
            "von wem ist {song_name}",
        ),
    },
}
# fmt: on

_CHOICE = re.compile(r"\(([^()]*)\)")
_SLOT = re.compile(r"\{([a-z_]+?)(\d?)(?::([a-z_]+))?\}")


@dataclass(frozen=True)
class SluUtterance:
    """One labelled command: its text and what it means."""

    text: str
    language: str
    scenario: str
    action: str
    entities: tuple[tuple[str, str], ...]  # (type, value) in the order they are spoken
    template: str  # the phrasing it came from, so held-out phrasings can be checked

    @property
    def intent(self) -> str:
        return f"{self.scenario}_{self.action}"

    def labels(self) -> dict:
        """The row fields shared by text and speech manifests (SLURP's, English labels)."""
        return {
            "text": self.text,
            "language": self.language,
            "scenario": self.scenario,
            "action": self.action,
            "entities": [{"type": t, "value": v} for t, v in self.entities],
        }


def split_intent(intent: str) -> tuple[str, str]:
    """``iot_hue_lighton`` -> (``iot``, ``hue_lighton``): scenarios hold no underscore."""
    scenario, _, action = intent.partition("_")
    return scenario, action


def split_templates(language: str, intent: str, split: str) -> tuple[str, ...]:
    """The phrasings a split may use: eval gets the last one, train all the others."""
    templates = TEMPLATES[language][intent]
    return templates[-1:] if split == "eval" else templates[:-1]


def filler_values(language: str, pool: str, split: str) -> tuple[str, ...]:
    """Values of a filler list a split may use: train never sees the held-out ones."""
    values = FILLERS[language][pool]
    if split == "eval":
        return values
    return tuple(
        v for i, v in enumerate(values) if i % FILLER_HOLDOUT_EVERY != FILLER_HOLDOUT_EVERY - 1
    )


def template_slots(template: str) -> list[tuple[str, str]]:
    """(entity type, filler list) of every slot a template can produce."""
    return [(m.group(1), m.group(3) or m.group(1)) for m in _SLOT.finditer(template)]


def intents(language: str) -> list[str]:
    """Intent names (``scenario_action``) with templates in ``language``."""
    return list(TEMPLATES[language])


def scenarios(language: str) -> list[str]:
    return sorted({split_intent(i)[0] for i in TEMPLATES[language]})


def entity_types(language: str) -> list[str]:
    return sorted(
        {t for ts in TEMPLATES[language].values() for tpl in ts for t, _ in template_slots(tpl)}
    )


def fill_template(
    template: str, language: str, split: str, rng: random.Random
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Text and entities of one template: choices first, then slots left to right."""
    chosen = _CHOICE.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    entities: list[tuple[str, str]] = []
    used: dict[str, list[str]] = {}

    def draw(match: re.Match[str]) -> str:
        entity_type, pool = match.group(1), match.group(3) or match.group(1)
        earlier = used.setdefault(entity_type, [])
        values = filler_values(language, pool, split)
        value = rng.choice([v for v in values if v not in earlier] or list(values))
        earlier.append(value)
        entities.append((entity_type, value))
        return value

    text = " ".join(_SLOT.sub(draw, chosen).split())
    return text, tuple(entities)


def sample_utterances(
    n: int,
    language: str,
    split: str,
    rng: random.Random,
    exclude: Iterable[str] = (),
    max_tries: int = 40,
) -> list[SluUtterance]:
    """Up to ``n`` distinct utterances of one split, intents taken in turn so all are covered.

    Each round shuffles the intents; an intent that cannot make a new text (not in ``exclude``,
    not drawn before) in ``max_tries`` draws gives its turn away, so fewer than ``n`` come back
    only when the split's phrasings are used up.
    """
    if language not in TEMPLATES:
        raise ValueError(f"no SLU templates for language {language!r}; choose from {LANGUAGES}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    names = intents(language)
    seen = set(exclude)
    out: list[SluUtterance] = []
    exhausted: set[str] = set()
    while len(out) < n and len(exhausted) < len(names):
        order = [i for i in names if i not in exhausted]
        rng.shuffle(order)
        for intent in order:
            if len(out) == n:
                break
            for _ in range(max_tries):
                template = rng.choice(split_templates(language, intent, split))
                text, entities = fill_template(template, language, split, rng)
                if text not in seen:
                    seen.add(text)
                    scenario, action = split_intent(intent)
                    out.append(SluUtterance(text, language, scenario, action, entities, template))
                    break
            else:
                exhausted.add(intent)
    return out
