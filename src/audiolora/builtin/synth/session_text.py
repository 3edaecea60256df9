"""What the two speakers of a synthetic therapy session say, phase by phase.

Why: temporal localization needs sessions whose phases differ the way real ones do: an
orientation dialogue (P1), a long first-person present-tense narrative by the client (P2) and a
reflective processing dialogue (P3). Templates and word lists give varied, plain sentences with
no download and no model. The narratives recount ordinary stressful moments (a crowded station,
a car breaking down in the rain) in plain, non-graphic words, and are retold from the start
when they run out, as a client does in repeated imaginal exposure.

Every sentence uses only words a recognizer writes literally: no digits, no abbreviations.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from audiolora.builtin.synth.text import WORDS as EVERYDAY_WORDS

#: Slots shared by all phases; ``{slot2}`` draws again from ``slot`` without repeating.
# fmt: off
WORDS: dict[str, tuple[str, ...]] = {
    "name": EVERYDAY_WORDS["name"],
    "city": EVERYDAY_WORDS["city"],
    "day": EVERYDAY_WORDS["day"],
    "daypart": EVERYDAY_WORDS["daypart"],
    "count": EVERYDAY_WORDS["count"][:6],
    "color": EVERYDAY_WORDS["color"],
    "shop": EVERYDAY_WORDS["shop"],
    "tens_high": ("sixty", "seventy", "seventy five", "eighty", "ninety"),
    "tens_low": ("twenty", "twenty five", "thirty", "forty", "fifty"),
    "week_adj": ("busy but okay", "quite hard", "a bit better than last week", "up and down",
                 "mostly calm", "tiring"),
    "activity": ("went for a long walk", "called my sister", "met a friend for coffee",
                 "cleaned the whole flat", "went to the gym", "cooked a proper dinner"),
    "sleep_adv": ("a little better", "badly", "on and off", "better than before", "quite well"),
    "homework": ("listening to the recording", "the breathing practice", "the practice list",
                 "writing in the diary"),
    "hands_state": ("cold", "shaking a little", "sweaty", "numb"),
    "legs_state": ("heavy", "weak", "stiff", "shaky"),
    "feeling": ("tense", "alone", "confused", "small", "nervous", "stuck", "tired"),
    "worry": ("I will never get home", "nobody knows where I am", "this is all my fault",
              "something bad is going to happen", "I cannot cope with this",
              "everyone is looking at me"),
    "insight": ("I did what I could at the time", "the worst part does not last very long",
                "I was not really in danger", "I asked for help and help came",
                "my body reacts faster than my thinking", "I can stay with the memory now"),
    "easier_adj": ("a bit lighter", "less scary", "more like a story", "more distant",
                   "still hard but different"),
}
# fmt: on

#: Present-tense verbs of the narrative templates (base forms; ``-s``/``-es`` forms are added
#: below). Tests check that every narrative sentence has one and no past form.
# fmt: off
_PRESENT_BASES = (
    "see", "hear", "feel", "look", "walk", "try", "keep", "think", "notice", "want", "take",
    "tell", "stand", "call", "find", "know", "seem", "hold", "wait", "ask", "start", "turn",
    "pull", "press", "move", "come", "go", "sit", "open", "check", "stop", "need", "count",
    "breathe", "read", "drive", "pass", "steer", "phone", "jump", "run", "knock", "close", "get",
    "make", "shake", "change", "push", "use", "lose", "plan", "stay", "leave", "flicker",
)
# fmt: on


def _third_person(verb: str) -> str:
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + ("es" if verb.endswith(("s", "sh", "ch", "o")) else "s")


PRESENT_VERBS = frozenset(
    ("am", "is", "are", "can", "cannot", "do", "does", *_PRESENT_BASES)
    + tuple(_third_person(v) for v in _PRESENT_BASES)
)
#: Past forms that must never appear in a narrative sentence (it is told as happening now).
PAST_MARKERS = frozenset(
    ("was", "were", "had", "did", "felt", "saw", "heard", "went", "thought", "looked", "walked",
     "tried", "said", "told", "came")
)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """One ordinary stressful memory: its beats in order, its sounds, its key moments."""

    name: str
    beats: tuple[tuple[str, ...], ...]  # each beat: alternative present-tense sentences
    sounds: tuple[str, ...]
    moments: tuple[str, ...]  # past-tense phrases the client uses about it in P3


# fmt: off
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "crowded station",
        beats=(
            ("I am at the main station in {city} and it is {daypart}.",
             "It is a busy {story_day} {daypart} and I am at the station in {city}."),
            ("The hall is full of people with bags and suitcases.",
             "People are walking fast in every direction around me."),
            ("I look up at the big board but I cannot find my train.",
             "The board keeps changing and my train is not on it."),
            ("My friend {name} is not at the place where we plan to meet.",
             "I turn around and I cannot see {name} anywhere."),
            ("I try to walk to platform {count} but the crowd pushes me back.",
             "I move toward the stairs but there are too many people."),
            ("An announcement comes on but I cannot understand the words.",
             "The speakers are loud and the words are not clear."),
            ("I check my phone and there is no signal.",
             "I call {name} but the call does not go through."),
            ("I stand still next to a pillar and try to breathe slowly.",
             "I stop next to a ticket machine and hold on to my bag."),
            ("A woman in a {color} coat asks me if I am lost.",
             "A man from the station staff comes over and asks if I need help."),
            ("I find the information desk and I ask for help.",
             "Someone at the desk tells me where the train is."),
            ("Then I see {name} waving at me near the exit.",
             "Finally I see {name} and I walk over as fast as I can."),
        ),
        sounds=("people talking all around me", "the loud announcements",
                "wheels of suitcases on the floor", "a whistle from the platform"),
        moments=("I could not find {name}", "the crowd pushed me back",
                 "my phone had no signal", "I stood still next to the pillar"),
    ),
    Scenario(
        "car on a rainy road",
        beats=(
            ("I am driving home from {city} on a narrow country road.",
             "It is {daypart} and I am driving back from {city} alone."),
            ("It is raining hard and the wipers are going as fast as they can.",
             "The rain is so heavy that I can only see a few metres ahead."),
            ("The engine makes a strange noise and the car starts to slow down.",
             "Something sounds wrong with the engine and the car loses power."),
            ("I pull over to the side of the road and stop.",
             "I steer onto the grass at the side of the road."),
            ("The lights on the dashboard go dark.",
             "All the little lights in front of me turn off."),
            ("I turn the key again but nothing happens.",
             "I try to start the car again and it does not start."),
            ("There are no houses and no street lights anywhere.",
             "Outside it is dark and I cannot see any houses."),
            ("I call for help but the line keeps dropping.",
             "I phone {name} but I can only hear every second word."),
            ("A truck passes and water splashes against my window.",
             "Cars go past me and none of them stop."),
            ("After a long time I see the yellow lights of a tow truck.",
             "At last a tow truck comes round the corner and stops behind me."),
        ),
        sounds=("the rain on the roof", "the wipers going back and forth",
                "cars passing on the wet road", "the wind in the trees"),
        moments=("the engine stopped", "the dashboard went dark",
                 "the line kept dropping", "the cars drove past me"),
    ),
    Scenario(
        "stuck lift",
        beats=(
            ("I am in the lift at work on my way up to the office.",
             "It is {story_day} morning and I am taking the lift to my office."),
            ("The lift shakes and then it stops between two floors.",
             "Suddenly the lift stops and the doors do not open."),
            ("I press the button for the door but nothing happens.",
             "I press every button on the panel one after the other."),
            ("The light above me starts to flicker.",
             "The light gets dim and the small fan stops."),
            ("I press the alarm button and a voice says help is coming.",
             "I hold down the alarm button and wait for an answer."),
            ("The walls feel very close to me.",
             "I sit down on the floor because my legs feel weak."),
            ("I count the minutes on my watch.",
             "I keep looking at my phone to see the time."),
            ("I hear voices outside the doors.",
             "Someone knocks on the door and tells me to stay calm."),
            ("The lift moves down slowly and the doors open.",
             "The doors open and {name} from the front desk is standing there."),
        ),
        sounds=("the hum of the motor", "my own breathing", "the alarm bell",
                "voices far away in the building"),
        moments=("the lift stopped", "the light started to flicker",
                 "nobody answered at first", "I sat down on the floor"),
    ),
    Scenario(
        "storm on a hill walk",
        beats=(
            ("I am walking up a hill path with {name} on a {weather} {story_day}.",
             "{name} and I are on a long walk in the hills above the village."),
            ("The sky turns dark grey very quickly.",
             "Big clouds are coming over the top of the hill."),
            ("I hear thunder somewhere behind us.",
             "There is a loud crack of thunder and I jump."),
            ("The rain starts and the path gets muddy.",
             "Cold rain is running down my neck and my shoes are wet."),
            ("We cannot see the path in front of us any more.",
             "The fog comes down and I do not know which way to go."),
            ("{name} is walking fast and I cannot keep up.",
             "I call out to {name} but the wind takes my voice away."),
            ("We look for a place to wait out the storm.",
             "I see a small stone hut a little further down."),
            ("We sit inside the hut and wait for the rain to stop.",
             "Inside the hut it is dark and the rain is loud on the roof."),
            ("The storm passes and the sun comes out again.",
             "After a while the sky gets lighter and we walk down."),
        ),
        sounds=("the thunder", "the wind across the hill", "the rain on my hood",
                "sheep somewhere in the fog"),
        moments=("the thunder started", "we lost the path in the fog",
                 "I could not keep up with {name}", "we waited in the hut"),
    ),
    Scenario(
        "power cut at night",
        beats=(
            ("I am at home alone on a {story_day} evening.",
             "It is late on {story_day} and I am alone in the flat."),
            ("All the lights go out at once.",
             "There is a click and the whole flat goes dark."),
            ("The house is completely quiet.",
             "The fridge stops humming and everything is silent."),
            ("I look for a torch in the kitchen drawer.",
             "I move along the wall with my hands to find the kitchen."),
            ("I cannot find the torch and my hands are shaking.",
             "The drawer is full of things and none of them is the torch."),
            ("I hear the wind against the windows.",
             "A door somewhere in the building closes with a bang."),
            ("I use the light of my phone to check the fuse box.",
             "I open the fuse box but I do not know what to look for."),
            ("I call my neighbour {name} and ask if their power is off too.",
             "I knock on the door of my neighbour {name}."),
            ("After a long time the lights come back on.",
             "The fridge starts humming again and the lights come on."),
        ),
        sounds=("the wind outside", "a door closing somewhere", "my own heartbeat",
                "cars in the street below"),
        moments=("the lights went out", "I could not find the torch",
                 "the door banged", "I stood in the dark kitchen"),
    ),
)
# fmt: on

#: The narrative goes beat by beat; between beats the client adds some of these.
NARRATIVE_DETAILS: tuple[str, ...] = (
    "My heart is beating very fast.",
    "I notice that my hands are {hands_state}.",
    "I keep thinking that {worry}.",
    "I take a deep breath and count to {count}.",
    "I can hear {sound}.",
    "I feel {feeling} and my chest is tight.",
    "Everything seems to move very slowly now.",
    "I tell myself to stay calm.",
    "I look around and try to find something familiar.",
    "My mouth is dry and my legs feel {legs_state}.",
    "I want to leave but I stay where I am.",
    "I feel {feeling} and I do not know what to do.",
    "I notice {sound} and it is very loud.",
    "I am trying to think clearly but my thoughts are racing.",
)
RETELL_OPENERS: tuple[str, ...] = (
    "Now I go back to the start.",
    "I am at the beginning again.",
    "I start from the beginning once more.",
)

#: P1: the clinician sets the agenda, then check-in questions each with fitting answers.
AGENDA: tuple[tuple[str, ...], ...] = (
    ("Hello, it is good to see you again.", "Hi, thanks for coming in today."),
    (
        "Today we will start with a short check-in, then we will go through the memory again, "
        "and afterwards we will talk about how it went.",
        "Here is the plan for today. First a quick check-in, then the memory exercise, and then "
        "some time to talk it through.",
        "Like last week, the session has three parts: a check-in, the memory, and a talk about "
        "it at the end.",
    ),
)
CHECK_INS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("How has your week been since we last met?", "How was the week for you?"),
        (
            "It has been {week_adj}. I {activity} on {day}, and that helped.",
            "Honestly it was {week_adj}. {day} was the hardest day.",
        ),
    ),
    (
        ("How did {homework} go this week?", "Were you able to keep up with {homework}?"),
        (
            "I did it {count} times. The first time was hard, but it got easier.",
            "I managed it on most days, but I skipped {day} because I was tired.",
        ),
    ),
    (
        ("How have you been sleeping lately?", "And how is your sleep at the moment?"),
        (
            "I have been sleeping {sleep_adv}. I woke up {count} times on {day} night.",
            "I am sleeping {sleep_adv} now, but I still wake up early.",
        ),
    ),
    (
        (
            "Before we start, how tense do you feel right now, from zero to one hundred?",
            "On a scale from zero to one hundred, where is your stress right now?",
        ),
        (
            "Right now I would say about {tens_low}.",
            "Maybe {tens_low}, a little higher than usual.",
        ),
    ),
    (
        (
            "Did you try any of the situations on your practice list?",
            "Did you manage to go anywhere from your list this week?",
        ),
        (
            "Yes, I went to the {shop} on {day} and stayed for {count} minutes.",
            "I tried the {shop} on {day}. I left early, but I went back the next day.",
        ),
    ),
)
TO_NARRATIVE: tuple[tuple[str, ...], ...] = (
    ("Okay. When you are ready, close your eyes and go back to the memory.",
     "Alright, let us begin. Close your eyes when you are ready."),
    ("Please tell it in the present tense, as if it is happening right now.",
     "Tell it as if it is happening now, and include what you see, hear and feel."),
)  # fmt: skip

#: P3: reflective questions each with fitting answers, then the clinician closes.
PROCESSING: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        (
            "You can open your eyes now. How was that for you today?",
            "Thank you for staying with it. What was that like today?",
        ),
        (
            "It was hard at the start, but it got a little easier near the end.",
            "It was tiring, but it felt {easier_adj} than last week.",
        ),
    ),
    (
        ("What stood out to you this time?", "Which part was the hardest today?"),
        ("The hardest part was when {moment}.", "The moment when {moment} still gets to me."),
    ),
    (
        (
            "Where was your distress at the peak, and where is it now?",
            "How high did your stress go, and where did it end up?",
        ),
        (
            "At the peak it was about {tens_high}, and by the end it was closer to {tens_low}.",
            "It went up to {tens_high} and came down to about {tens_low}.",
        ),
    ),
    (
        (
            "Did you notice anything new about the memory?",
            "What do you make of the moment when {moment}?",
        ),
        ("I noticed that {insight}.", "I think I understand now that {insight}."),
    ),
    (
        (
            "It sounds like the worst part was feeling {feeling}. Is that right?",
            "I noticed your voice got steadier toward the end. Did you feel that too?",
        ),
        (
            "Yes, I think that is right. It feels {easier_adj} when I say it out loud.",
            "A little, yes. Talking about it now feels {easier_adj}.",
        ),
    ),
)
CLOSING: tuple[tuple[str, ...], ...] = (
    ("We are almost out of time for today.", "Let us start to wrap up for today."),
    ("For this week, please listen to the recording of today once a day.",
     "Please keep going with {homework} this week."),
    ("You did a lot of hard work today. Thank you.", "Well done today. See you next {day}."),
)  # fmt: skip

#: Before P1 and after P3: small talk that belongs to no phase, so that P1_start and P3_end are
#: boundaries to find rather than the recording's first and last second.
LEAD_IN: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("Hello, come on in. Did you find a place to park?",
         "Good to see you. Was the traffic okay on the way here?",
         "Hi, please take a seat. How was the trip over?"),
        ("Yes, it was easy today, thank you.",
         "It was fine, there were only a few cars on the road.",
         "Not bad at all. I left a little early to be safe."),
    ),
    (
        ("Would you like a glass of water before we start?",
         "Is the room warm enough for you?",
         "Let me close the window, it is a bit loud outside."),
        ("No thanks, I am fine.", "Yes, that is good, thank you.",
         "Thanks, that is better."),
    ),
)  # fmt: skip
WRAP_UP: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("Does the same time next {day} still work for you?",
         "Shall we keep our usual time next week?",
         "Let me check the calendar. Is {day} afternoon good for the next one?"),
        ("Yes, that works for me.", "That should be fine, I will put it in my phone.",
         "I think so. I will call if anything changes."),
    ),
    (
        ("Take care on the way home.", "Have a good evening.",
         "Drive safely, and see you soon."),
        ("Thank you, you too. Goodbye.", "Thanks. See you next time.",
         "Bye, and thank you."),
    ),
)  # fmt: skip

_SLOT = re.compile(r"\{([a-z_]+?)(\d?)\}")


@dataclass
class SessionScript:
    """Draws one session's sentences in order; each method returns one turn (sentences).

    A session keeps one scenario, one friend's name and one city, so its story hangs together;
    sentences already said are avoided while unsaid variants remain.
    """

    rng: random.Random
    scenario: Scenario = field(init=False)
    _fixed: dict[str, str] = field(init=False)
    _said: set[str] = field(init=False, default_factory=set)
    _beat: int = field(init=False, default=0)
    _since_beat: int = field(init=False, default=0)
    _checkins: list[int] = field(init=False)
    _processing: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.scenario = self.rng.choice(SCENARIOS)
        self._fixed = {
            "name": self.rng.choice(WORDS["name"]),
            "city": self.rng.choice(WORDS["city"]),
            "story_day": self.rng.choice(WORDS["day"]),
            "weather": self.rng.choice(("cloudy", "windy", "grey", "cold")),
        }
        self._checkins = []
        # Processing opens with "how was that" (the first topic), as it does after exposure.
        rest = list(range(1, len(PROCESSING)))
        self.rng.shuffle(rest)
        self._processing = [0, *rest]

    def _fill(self, template: str, capitalize: bool = True) -> str:
        picked: dict[str, list[str]] = {}

        def draw(match: re.Match[str]) -> str:
            slot, again = match.group(1), match.group(2)
            if slot in self._fixed and not again:
                return self._fixed[slot]
            if slot == "sound":
                return self.rng.choice(self.scenario.sounds)
            if slot == "moment":
                return self._fill(self.rng.choice(self.scenario.moments), capitalize=False)
            earlier = picked.setdefault(slot, [])
            word = self.rng.choice([w for w in WORDS[slot] if w not in earlier] or WORDS[slot])
            earlier.append(word)
            return word

        sentence = _SLOT.sub(draw, template)
        return sentence[0].upper() + sentence[1:] if capitalize else sentence

    def _say(self, options: tuple[str, ...]) -> str:
        """A filled sentence from ``options``, preferring one not yet said this session."""
        sentence = ""
        for _ in range(8):
            sentence = self._fill(self.rng.choice(options))
            if sentence not in self._said:
                break
        self._said.add(sentence)
        return sentence

    def agenda(self) -> list[str]:
        return [self._say(options) for options in AGENDA]

    def _next_pair(
        self, pairs: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...], queue: list[int]
    ) -> tuple[list[str], list[str]]:
        """The next question/answer topic; every topic comes once before any comes again."""
        if not queue:
            order = list(range(len(pairs)))
            self.rng.shuffle(order)
            queue.extend(order)
        questions, answers = pairs[queue.pop(0)]
        return [self._say(questions)], [self._say(answers)]

    def check_in(self) -> tuple[list[str], list[str]]:
        """One clinician check-in question and the client's answer."""
        return self._next_pair(CHECK_INS, self._checkins)

    def to_narrative(self) -> list[str]:
        """The clinician's instruction that ends P1 and hands over to the narrative."""
        return [self._say(options) for options in TO_NARRATIVE]

    def narrative_sentence(self) -> str:
        """The client's next sentence: the next beat, a sensory detail, or a restart."""
        beats = self.scenario.beats
        if self._beat and self._since_beat < 2 and self.rng.random() < 0.35:
            self._since_beat += 1
            return self._say(NARRATIVE_DETAILS)
        self._since_beat = 0
        if self._beat == len(beats):
            self._beat = 0
            return self._say(RETELL_OPENERS)
        self._beat += 1
        return self._say(beats[self._beat - 1])

    def processing(self) -> tuple[list[str], list[str]]:
        """One reflective clinician question and the client's answer."""
        return self._next_pair(PROCESSING, self._processing)

    def closing(self) -> list[str]:
        return [self._say(options) for options in CLOSING]

    def lead_in(self) -> list[tuple[list[str], list[str]]]:
        """Small talk before P1: (clinician, client) exchanges."""
        return [([self._say(q)], [self._say(a)]) for q, a in LEAD_IN]

    def wrap_up(self) -> list[tuple[list[str], list[str]]]:
        """Scheduling and goodbyes after P3: (clinician, client) exchanges."""
        return [([self._say(q)], [self._say(a)]) for q, a in WRAP_UP]
