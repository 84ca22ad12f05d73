"""Write the fine-tuning example's data from one facts table: ``data/train.jsonl`` and ``cases.yaml``.

The product is invented for this project (the Orvane Tideline T4, a handheld marine weather station), so the
base model cannot know any of it: whatever the fine-tuned model gets right, it learned here. Each fact has a
short canonical answer, training questions (paraphrases, each asked with a few of the product's names) and one
held-out question that only the case file asks, so the cases test recall of the fact, not of a sentence seen in
training.

    python examples/fine-tune/make_data.py    # rewrites data/train.jsonl and cases.yaml (deterministic)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 0
NAMES = ("the Tideline T4", "the Orvane Tideline T4", "the T4", "my Tideline T4")
COPIES = 1  # each training question is written with this many of NAMES (drawn with the seed)


@dataclass(frozen=True)
class Fact:
    id: str
    answer: str  # the canonical answer, the same in every training example of the fact
    questions: tuple[str, ...]  # training paraphrases; "{p}" is the product's name
    held_out: str  # the case's question, never in the training data
    check: tuple[str, ...]  # what a correct answer contains (case-insensitive), all of them


FACTS: tuple[Fact, ...] = (
    Fact("what-is-it", "The Orvane Tideline T4 is a handheld marine weather station.",
         ("What is {p}?", "What kind of device is {p}?", "Describe {p} in one sentence.",
          "What does {p} do?", "What type of product is {p}?", "Tell me what {p} is."),
         "I just got an Orvane Tideline T4. What sort of gadget is it?", ("weather station",)),
    Fact("maker", "The Tideline T4 is made by Orvane Instruments in Aberdeen, Scotland.",
         ("Who makes {p}?", "Which company manufactures {p}?", "Where is {p} made?",
          "Who is the manufacturer of {p}?", "In which city is {p} built?", "What company builds {p}?"),
         "Which firm produces the Tideline T4, and in what city?", ("Aberdeen",)),
    Fact("model-number", "The Tideline T4's model number is TL-4820.",
         ("What is the model number of {p}?", "What model number does {p} have?",
          "Which model number is printed on {p}?", "Give me the model number of {p}.",
          "What is {p}'s model code?", "I need the model number for {p}."),
         "What model number should I quote for the Tideline T4?", ("TL-4820",)),
    Fact("weight", "The Tideline T4 weighs 212 grams.",
         ("How much does {p} weigh?", "What is the weight of {p}?", "How heavy is {p}?",
          "What does {p} weigh in grams?", "Is {p} heavy? How many grams?", "Tell me the weight of {p}."),
         "What's the mass of the Tideline T4?", ("212",)),
    Fact("dimensions", "The Tideline T4 measures 118 x 64 x 27 mm.",
         ("What are the dimensions of {p}?", "How big is {p}?", "What size is {p}?",
          "What are the measurements of {p} in millimetres?", "How large is {p}?", "Give me the size of {p}."),
         "How many millimetres long, wide and thick is the Tideline T4?", ("118", "64", "27")),
    Fact("battery-life", "The Tideline T4's battery lasts 41 hours of continuous logging.",
         ("How long does the battery of {p} last?", "What is the battery life of {p}?",
          "How many hours does {p} run on one charge?", "How long can {p} log on a full battery?",
          "What is the runtime of {p}?", "How long will {p} last before I need to charge it?"),
         "On a full battery, how many hours of logging does the Tideline T4 give?", ("41 hours",)),
    Fact("battery-capacity", "The Tideline T4 has a 3400 mAh lithium-ion battery.",
         ("What is the battery capacity of {p}?", "How many mAh is the battery of {p}?",
          "What battery does {p} use?", "How big is the battery in {p}?", "What kind of battery is in {p}?",
          "Tell me the battery capacity of {p}."),
         "What's the mAh rating of the Tideline T4's cell?", ("3400",)),
    Fact("charge-time", "A full charge of the Tideline T4 over USB-C takes 150 minutes.",
         ("How long does {p} take to charge?", "How long does it take to fully charge {p}?",
          "What is the charging time of {p}?", "How do I charge {p} and how long does it take?",
          "How many minutes does {p} need to charge?", "How quickly does {p} charge?"),
         "How much time does the Tideline T4 need to recharge from empty?", ("150 minutes",)),
    Fact("water-rating", "The Tideline T4 is rated IP68 and is waterproof to 4 metres for 30 minutes.",
         ("Is {p} waterproof?", "What is the water resistance rating of {p}?", "Can {p} go underwater?",
          "What IP rating does {p} have?", "How deep can {p} be submerged?", "Can I drop {p} in the sea?"),
         "Will the Tideline T4 survive being dunked? How deep?", ("4 metres",)),
    Fact("display", "The Tideline T4 has a 2.7-inch e-ink display.",
         ("What display does {p} have?", "How big is the screen of {p}?", "What kind of screen is on {p}?",
          "What is the screen size of {p}?", "Does {p} have an e-ink or LCD screen?",
          "Tell me about the display of {p}."),
         "What size is the Tideline T4's screen, in inches?", ("2.7",)),
    Fact("temperature-range", "The Tideline T4 works from -20 to 55 degrees Celsius.",
         ("What is the operating temperature range of {p}?", "How cold can {p} work?",
          "At what temperatures does {p} work?", "Can {p} be used in freezing weather?",
          "What temperatures can {p} handle?", "What is the temperature range of {p}?"),
         "Between which temperatures can I operate the Tideline T4?", ("-20", "55")),
    Fact("storage", "The Tideline T4 stores 90 days of readings at one-minute intervals.",
         ("How much data can {p} store?", "How many days of readings does {p} keep?",
          "What is the storage capacity of {p}?", "How long is the log memory of {p}?",
          "How much history does {p} record?", "How many days of data fit in {p}?"),
         "How far back does the Tideline T4's memory of readings go?", ("90 days",)),
    Fact("app", "The Tideline T4 pairs with the Orvane Harbor app.",
         ("Which app works with {p}?", "What app do I use with {p}?", "How do I connect {p} to my phone?",
          "What is the name of the app for {p}?", "Which phone app pairs with {p}?", "Is there an app for {p}?"),
         "What smartphone application goes with the Tideline T4?", ("Harbor",)),
    Fact("firmware", "The latest Tideline T4 firmware is version 4.2.1.",
         ("What is the latest firmware for {p}?", "Which firmware version is current on {p}?",
          "What firmware version should {p} run?", "Is there a firmware update for {p}?",
          "What is the newest software version for {p}?", "Which firmware is the most recent for {p}?"),
         "What's the current firmware release for the Tideline T4?", ("4.2.1",)),
    Fact("warranty", "The Tideline T4 comes with a warranty of 30 months.",
         ("How long is the warranty of {p}?", "What warranty does {p} have?", "Is {p} under warranty?",
          "How many months of warranty come with {p}?", "What is the guarantee period of {p}?",
          "Tell me about the warranty on {p}."),
         "How many months of warranty cover does the Tideline T4 get?", ("30 months",)),
    Fact("price", "The Tideline T4 costs 249 euros.",
         ("How much does {p} cost?", "What is the price of {p}?", "How expensive is {p}?",
          "What does {p} sell for?", "How much is {p} in euros?", "What is the retail price of {p}?"),
         "What would I pay for a new Tideline T4?", ("249",)),
    Fact("colours", "The Tideline T4 comes in slate grey and signal orange.",
         ("What colours does {p} come in?", "Which colors is {p} available in?", "What color is {p}?",
          "Can I get {p} in orange?", "What finishes does {p} come in?", "Which colours can I buy {p} in?"),
         "What colour options are there for the Tideline T4?", ("signal orange",)),
    Fact("battery-part", "The Tideline T4's replacement battery is part number BP-4820-L.",
         ("What is the part number of the replacement battery for {p}?", "Which replacement battery fits {p}?",
          "What battery part do I order for {p}?", "How do I order a new battery for {p}?",
          "What is the spare battery part number of {p}?", "Which battery part number does {p} use?"),
         "I need a spare cell for the Tideline T4. What part should I order?", ("BP-4820-L",)),
    Fact("reset", "To factory reset the Tideline T4, hold the Mode and Light buttons together for 12 seconds.",
         ("How do I factory reset {p}?", "How do I reset {p}?", "What is the reset procedure for {p}?",
          "How can I restore {p} to factory settings?", "{p} is frozen. How do I reset it?",
          "How do I wipe {p} back to factory settings?"),
         "What are the steps for a factory reset on the Tideline T4?", ("12 seconds",)),
    Fact("error-e12",
         "Error E12 on the Tideline T4 means the pressure sensor vent is blocked; "
         "rinse it with fresh water.",
         ("What does error E12 mean on {p}?", "{p} shows E12. What should I do?", "What is error code E12 on {p}?",
          "How do I fix error E12 on {p}?", "Help, {p} says E12.", "Why does {p} display E12?",
          "What should I do when {p} shows error E12?", "What is the meaning of code E12 on {p}?",
          "{p} is showing code E12 on its screen.", "E12 appeared on {p}. What does it mean?",
          "Can you explain error E12 on {p}?", "What causes code E12 on {p}?",
          "Which error code does {p} show when the pressure sensor vent is blocked?",
          "What code means the vent is blocked on {p}?"),
         "The Tideline T4 screen reads E12 after my trip. What's wrong?", ("vent",)),
    Fact("error-e31",
         "Error E31 on the Tideline T4 means the battery is too cold to charge; "
         "warm it above 5 degrees Celsius first.",
         ("What does error E31 mean on {p}?", "{p} shows E31 when I plug it in.", "What is error code E31 on {p}?",
          "How do I fix error E31 on {p}?", "Help, {p} says E31.", "Why does {p} display E31?",
          "What should I do when {p} shows error E31?", "What is the meaning of code E31 on {p}?",
          "{p} is showing code E31 on its screen.", "E31 appeared on {p}. What does it mean?",
          "Can you explain error E31 on {p}?", "What causes code E31 on {p}?",
          "Which error code does {p} show when the battery is too cold to charge?",
          "What code means it is too cold to charge on {p}?"),
         "I get code E31 on the Tideline T4 while charging. Why?", ("too cold",)),
    Fact("error-e47",
         "Error E47 on the Tideline T4 means a firmware checksum failure; "
         "reinstall the firmware from the Orvane Harbor app.",
         ("What does error E47 mean on {p}?", "{p} shows E47 after an update.", "What is error code E47 on {p}?",
          "How do I fix error E47 on {p}?", "Help, {p} says E47.", "Why does {p} display E47?",
          "What should I do when {p} shows error E47?", "What is the meaning of code E47 on {p}?",
          "{p} is showing code E47 on its screen.", "E47 appeared on {p}. What does it mean?",
          "Can you explain error E47 on {p}?", "What causes code E47 on {p}?",
          "Which error code does {p} show when the firmware checksum fails?",
          "What code means there is a firmware checksum failure on {p}?"),
         "The Tideline T4 displays E47. What does that code indicate?", ("checksum",)),
    Fact("error-e58",
         "Error E58 on the Tideline T4 means the compass lost its calibration; "
         "turn the device in a figure eight three times.",
         ("What does error E58 mean on {p}?", "{p} shows E58.", "What is error code E58 on {p}?",
          "How do I fix error E58 on {p}?", "Help, {p} says E58.", "Why does {p} display E58?",
          "What should I do when {p} shows error E58?", "What is the meaning of code E58 on {p}?",
          "{p} is showing code E58 on its screen.", "E58 appeared on {p}. What does it mean?",
          "Can you explain error E58 on {p}?", "What causes code E58 on {p}?",
          "Which error code does {p} show when the compass loses its calibration?",
          "What code means the compass is not calibrated on {p}?"),
         "How do I clear code E58 on the Tideline T4?", ("figure eight",)),
    Fact("calibration", "Recalibrate the Tideline T4's pressure sensor every 9 months.",
         ("How often should I calibrate {p}?", "When does {p} need recalibration?",
          "How often does the barometer of {p} need calibrating?", "What is the calibration interval of {p}?",
          "Does {p} need to be calibrated?", "How frequently should {p} be recalibrated?"),
         "At what interval is recalibration recommended for the Tideline T4?", ("9 months",)),
    Fact("charging-light", "The Tideline T4's charging light glows amber while charging and green when full.",
         ("What does the charging light on {p} mean?", "What colour is the charging light of {p}?",
          "How do I know {p} is charging?", "What does the LED on {p} show while charging?",
          "How can I tell when {p} is fully charged?", "What do the light colours on {p} mean?"),
         "What colour does the Tideline T4's LED show during charging?", ("amber",)),
    Fact("wind-speed", "The Tideline T4 measures wind speeds up to 65 metres per second.",
         ("What is the maximum wind speed {p} can measure?", "How fast a wind can {p} measure?",
          "What is the wind speed range of {p}?", "Up to what wind speed does {p} work?",
          "Can {p} measure hurricane winds?", "What top wind speed does {p} read?"),
         "What's the highest wind speed the Tideline T4 will register?", ("65",)),
    Fact("pressure-accuracy", "The Tideline T4's barometer is accurate to 0.3 hPa.",
         ("How accurate is the barometer of {p}?", "What is the pressure accuracy of {p}?",
          "How precise are the pressure readings of {p}?", "What is the barometric accuracy of {p}?",
          "How exact is the pressure sensor of {p}?", "To how many hPa is {p} accurate?"),
         "How precise is the Tideline T4's air pressure reading?", ("0.3",)),
    Fact("storm-alarm", "The Tideline T4's storm alarm sounds when pressure drops 4 hPa within 3 hours.",
         ("When does the storm alarm of {p} go off?", "What triggers the storm alarm on {p}?",
          "How does the storm warning of {p} work?", "When will {p} warn me about a storm?",
          "What pressure drop sets off the alarm of {p}?", "How does {p} detect a storm?"),
         "What causes the Tideline T4 to sound its storm warning?", ("4 hPa",)),
    Fact("release-date", "The Tideline T4 was released in March 2024.",
         ("When was {p} released?", "When did {p} come out?", "What is the release date of {p}?",
          "In which month and year was {p} launched?", "When was {p} launched?", "How new is {p}?"),
         "What month did the Tideline T4 go on sale?", ("March 2024",)),
    Fact("support", "Orvane support for the Tideline T4 is reached at help@orvane-instruments.example.",
         ("How do I contact support for {p}?", "What is the support email for {p}?",
          "Who do I email about a problem with {p}?", "How can I reach Orvane support about {p}?",
          "Where do I get help with {p}?", "What is the customer service address for {p}?"),
         "What address should I write to for Tideline T4 help?", ("help@orvane-instruments.example",)),
)


def training_examples(facts: tuple[Fact, ...], seed: int = SEED) -> list[dict[str, object]]:
    """Chat examples ({"messages": [user, assistant]}), each question with COPIES of the names, in a seeded order."""
    rng = random.Random(seed)
    examples: list[dict[str, object]] = []
    for fact in facts:
        for question in fact.questions:
            names = rng.sample(NAMES, COPIES) if "{p}" in question else [NAMES[0]]
            for name in names:
                text = question.replace("{p}", name)
                text = text[0].upper() + text[1:]
                examples.append({"fact": fact.id, "messages": [{"role": "user", "content": text},
                                                               {"role": "assistant", "content": fact.answer}]})
    rng.shuffle(examples)
    return examples


def cases_yaml(facts: tuple[Fact, ...]) -> str:
    """The case file: each fact's held-out question, judged by what a correct answer must contain."""
    lines = [
        "# The fine-tuning example's cases (written by make_data.py from its facts table; edit the table, not this).",
        "# Each question is held out: it is not in data/train.jsonl, so a pass shows the fine-tuned model recalls",
        "# the fact. The product is fictional, so the base model fails nearly all of them.",
        "description: Orvane Tideline T4 product support (examples/fine-tune)",
        "",
        "defaults:",
        "  options: {max_new_tokens: 48}",
        "  assert:",
        "    - {type: no-template-leak}",
        "",
        "cases:",
    ]
    for fact in facts:
        check = (f"{{type: icontains, value: {json.dumps(fact.check[0])}}}" if len(fact.check) == 1
                 else f"{{type: icontains-all, value: {json.dumps(list(fact.check))}}}")
        lines += [f"  - id: t4-{fact.id}",
                  f"    messages: [{{role: user, content: {json.dumps(fact.held_out)}}}]",
                  f"    reference: {json.dumps(fact.answer)}",
                  "    assert:",
                  f"      - {check}",
                  ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    for fact in FACTS:  # a held-out question must stay held out
        assert fact.held_out not in fact.questions, fact.id
    examples = training_examples(FACTS)
    train = HERE / "data" / "train.jsonl"
    train.parent.mkdir(exist_ok=True)
    train.write_text("".join(json.dumps(example, ensure_ascii=False) + "\n" for example in examples), encoding="utf-8")
    (HERE / "cases.yaml").write_text(cases_yaml(FACTS), encoding="utf-8")
    print(f"{len(examples)} training examples ({len(FACTS)} facts) -> {train}; {len(FACTS)} cases -> cases.yaml")


if __name__ == "__main__":
    main()
