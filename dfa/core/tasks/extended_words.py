"""Word lists of the extended task suite; each tokenizer's checks drop the entries it splits."""

from __future__ import annotations


def _table(text: str) -> dict[str, str]:
    """`"key: value; key: value"` -> {key: value}, in the text's order."""
    pairs = (item.split(":") for item in text.split(";"))
    return {key.strip(): value.strip() for key, value in pairs}


# --- factual relations -------------------------------------------------------------------------
COUNTRY_LANGUAGE = _table(
    "France: French; Germany: German; Spain: Spanish; Italy: Italian; Portugal: Portuguese; Japan: "
    "Japanese; China: Chinese; Russia: Russian; Greece: Greek; Turkey: Turkish; Poland: Polish; "
    "Sweden: Swedish; Norway: Norwegian; Denmark: Danish; Finland: Finnish; Holland: Dutch; Korea: "
    "Korean; Vietnam: Vietnamese; Thailand: Thai; Israel: Hebrew; Hungary: Hungarian; Brazil: "
    "Portuguese; Mexico: Spanish; Argentina: Spanish; Egypt: Arabic; Ukraine: Ukrainian; Romania: "
    "Romanian; Indonesia: Indonesian; Austria: German; Iran: Persian; Peru: Spanish; Chile: Spanish; "
    "Colombia: Spanish; Cuba: Spanish; Morocco: Arabic; Iraq: Arabic; Syria: Arabic; Mongolia: "
    "Mongolian"
)
# A city (mostly not a capital, so the task is no rewording of `capitals`) and its country.
CITY_COUNTRY = _table(
    "Munich: Germany; Hamburg: Germany; Frankfurt: Germany; Cologne: Germany; Lyon: France; "
    "Marseille: France; Nice: France; Bordeaux: France; Milan: Italy; Naples: Italy; Venice: Italy; "
    "Florence: Italy; Barcelona: Spain; Seville: Spain; Valencia: Spain; Osaka: Japan; Kyoto: Japan; "
    "Shanghai: China; Toronto: Canada; Montreal: Canada; Vancouver: Canada; Sydney: Australia; "
    "Melbourne: Australia; Chicago: America; Boston: America; Houston: America; Seattle: America; "
    "Manchester: England; Liverpool: England; Birmingham: England; Glasgow: Scotland; Edinburgh: "
    "Scotland; Mumbai: India; Istanbul: Turkey; Rotterdam: Holland; Porto: Portugal; Krakow: Poland; "
    "Alexandria: Egypt; Rio: Brazil; Zurich: Switzerland; Geneva: Switzerland"
)
# (a thing as it is named mid-sentence, its usual colour); things of two common colours left out.
OBJECT_COLOR = _table(
    "a banana: yellow; a lemon: yellow; a canary: yellow; fresh grass: green; a lime: green; a frog: "
    "green; a cucumber: green; an emerald: green; fresh snow: white; milk: white; a polar bear: "
    "white; a swan: white; coal: black; a crow: black; a raven: black; a clear sky: blue; the ocean: "
    "blue; a sapphire: blue; a blueberry: blue; blood: red; a tomato: red; a strawberry: red; a ruby: "
    "red; a fire truck: red; a carrot: orange; a pumpkin: orange; a tangerine: orange; chocolate: "
    "brown; an eggplant: purple; a plum: purple; lavender: purple; a flamingo: pink; a pig: pink"
)
# (a member, its category): the category is the answer.
HYPERNYM = _table(
    "robin: bird; eagle: bird; sparrow: bird; owl: bird; parrot: bird; pigeon: bird; salmon: fish; "
    "trout: fish; tuna: fish; cod: fish; rose: flower; tulip: flower; daisy: flower; lily: flower; "
    "orchid: flower; oak: tree; pine: tree; maple: tree; birch: tree; willow: tree; apple: fruit; "
    "banana: fruit; mango: fruit; cherry: fruit; peach: fruit; grape: fruit; carrot: vegetable; "
    "potato: vegetable; onion: vegetable; cabbage: vegetable; spinach: vegetable; hammer: tool; "
    "wrench: tool; drill: tool; screwdriver: tool; violin: instrument; guitar: instrument; piano: "
    "instrument; flute: instrument; trumpet: instrument; truck: vehicle; bus: vehicle; bicycle: "
    "vehicle; tractor: vehicle; ant: insect; bee: insect; beetle: insect; mosquito: insect; iron: "
    "metal; copper: metal; silver: metal; zinc: metal; dog: animal; horse: animal; tiger: animal; "
    "rabbit: animal"
)
WORKPLACE = _table(
    "doctor: hospital; nurse: hospital; surgeon: hospital; teacher: school; principal: school; chef: "
    "restaurant; waiter: restaurant; pilot: airport; farmer: farm; judge: court; lawyer: court; "
    "librarian: library; banker: bank; cashier: bank; priest: church; actor: theater; scientist: lab; "
    "chemist: lab; miner: mine; sailor: ship; soldier: army; baker: bakery; mechanic: garage; "
    "firefighter: station; professor: university; pharmacist: pharmacy; clerk: office; secretary: "
    "office; zookeeper: zoo; curator: museum"
)

# --- word-level relations and morphology ---------------------------------------------------------
ANTONYMS = _table(
    "hot: cold; big: small; up: down; fast: slow; happy: sad; good: bad; dark: light; tall: short; "
    "rich: poor; open: closed; hard: soft; early: late; full: empty; wet: dry; high: low; strong: "
    "weak; loud: quiet; thick: thin; clean: dirty; young: old; buy: sell; push: pull; left: right; "
    "inside: outside; black: white; day: night; true: false; love: hate; first: last; north: south; "
    "east: west; win: lose; above: below; before: after; top: bottom; heavy: light; cheap: expensive; "
    "easy: difficult; alive: dead; friend: enemy"
)
PLURALS = _table(
    "cat: cats; dog: dogs; house: houses; car: cars; book: books; bird: birds; tree: trees; chair: "
    "chairs; table: tables; apple: apples; egg: eggs; cup: cups; box: boxes; bus: buses; church: "
    "churches; city: cities; baby: babies; story: stories; knife: knives; leaf: leaves; wolf: wolves; "
    "child: children; man: men; woman: women; foot: feet; tooth: teeth; mouse: mice; goose: geese; "
    "person: people; horse: horses; ship: ships; river: rivers; girl: girls; boy: boys; key: keys; "
    "door: doors; window: windows; shoe: shoes; glass: glasses; dish: dishes; potato: potatoes; "
    "tomato: tomatoes"
)
PAST_TENSE = _table(
    "go: went; eat: ate; see: saw; run: ran; take: took; give: gave; write: wrote; speak: spoke; "
    "drink: drank; sing: sang; swim: swam; buy: bought; bring: brought; think: thought; make: made; "
    "come: came; know: knew; find: found; tell: told; sit: sat; stand: stood; drive: drove; fly: "
    "flew; break: broke; choose: chose; wear: wore; sleep: slept; meet: met; pay: paid; keep: kept; "
    "feel: felt; sell: sold; teach: taught; catch: caught; fall: fell; grow: grew; throw: threw; "
    "draw: drew; ride: rode; forget: forgot; begin: began; build: built; send: sent; walk: walked; "
    "play: played; jump: jumped; cook: cooked; dance: danced; laugh: laughed; talk: talked; work: "
    "worked; call: called; watch: watched; help: helped; visit: visited; listen: listened"
)
COMPARATIVES = _table(
    "big: bigger; small: smaller; tall: taller; short: shorter; fast: faster; slow: slower; old: "
    "older; young: younger; strong: stronger; weak: weaker; cheap: cheaper; rich: richer; long: "
    "longer; high: higher; low: lower; hard: harder; soft: softer; warm: warmer; cold: colder; hot: "
    "hotter; dark: darker; bright: brighter; good: better; bad: worse; large: larger; wide: wider; "
    "deep: deeper; heavy: heavier; easy: easier; happy: happier; early: earlier; late: later; safe: "
    "safer; clean: cleaner; close: closer; smart: smarter; loud: louder; quiet: quieter"
)

# --- sequences ---------------------------------------------------------------------------------
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April May June July August September October November December".split()
NUMBER_WORDS = "one two three four five six seven eight nine ten eleven twelve".split()
ORDINALS = "first second third fourth fifth sixth seventh eighth ninth tenth".split()
LETTERS = "abcdefghijklmnopqrstuvwxyz"

# --- copying, binding, tracking ----------------------------------------------------------------
# Short, common nouns (most are one token with a leading space under BPE and SentencePiece).
COPY_NOUNS = (
    "apple chair river moon table garden window bottle candle pencil mirror basket horse wheel "
    "forest bridge castle island rocket ladder blanket jacket pillow carpet hammer kettle tunnel "
    "violin tiger camel dolphin lemon onion pepper cookie butter cheese orange ocean desert valley"
).split()
COPY_NOUNS_LEXICAL = (
    "cloud stone flower silver paper circle button rabbit engine planet shadow thunder crystal "
    "marble spider monkey parrot turtle pirate wizard dragon banana potato tomato carrot coffee "
    "winter summer autumn purple yellow copper velvet"
).split()
PERSON_NAMES = (
    "Anna Tom Lisa Mark Sarah Paul Emma John Kate Peter Lucy David Maria James Laura Mike Alice "
    "Sam Julia Ben Rose Jack Helen Dan"
).split()
COLORS = "red blue green yellow black white brown pink purple orange grey".split()
CONSONANT_COLORS = [c for c in COLORS if c[0] not in "aeiou"]
KV_KEYS = {
    "city": "Paris London Berlin Rome Madrid Tokyo Boston Dublin Vienna Cairo".split(),
    "pet": "dog cat rabbit parrot horse turtle hamster goldfish".split(),
    "food": "pizza pasta soup rice bread salad cheese cake".split(),
    "sport": "tennis soccer golf hockey rugby cricket boxing baseball".split(),
    "color": COLORS,
}
KV_KEYS_LEXICAL = {
    "drink": "tea coffee milk juice water wine beer soda".split(),
    "job": "doctor teacher pilot farmer lawyer chef nurse baker".split(),
    "car": "Ford Toyota Honda BMW Audi Tesla Volvo Fiat".split(),
    "fruit": "apple banana mango cherry peach grape lemon melon".split(),
    "month": "January February March April May June July August".split(),
}
BOX_OBJECTS = "apple key coin ball book ring pen cup shoe hat watch toy".split()
BOX_OBJECTS_LEXICAL = "map card bell lamp sock fork spoon doll egg stone".split()
BOX_LABELS = "ABCDE"

# --- agreement -----------------------------------------------------------------------------------
# A noun phrase's head and the reflexive pronoun that agrees with it.
REFLEXIVE_NOUNS = _table(
    "king: himself; queen: herself; man: himself; woman: herself; boy: himself; girl: herself; "
    "father: himself; mother: herself; brother: himself; sister: herself; kings: themselves; queens: "
    "themselves; men: themselves; women: themselves; boys: themselves; girls: themselves"
)
REFLEXIVE_NOUNS_LEXICAL = _table(
    "son: himself; daughter: herself; uncle: himself; aunt: herself; husband: himself; wife: herself; "
    "prince: himself; princess: herself; actor: himself; actress: herself; sons: themselves; "
    "daughters: themselves; uncles: themselves; aunts: themselves; princes: themselves; actors: "
    "themselves"
)

# --- in-context labelling ------------------------------------------------------------------------
SENTIMENT = {
    "positive": "great lovely wonderful excellent amazing fantastic perfect beautiful brilliant pleasant".split(),
    "negative": "awful terrible horrible dreadful boring ugly disgusting poor nasty lousy".split(),
}
SENTIMENT_LEXICAL = {
    "positive": "superb delightful charming splendid fabulous marvelous gorgeous cheerful".split(),
    "negative": "miserable painful rotten gloomy awkward shabby dull annoying".split(),
}
SENTIMENT_NOUNS = "movie food day trip song book hotel game party show".split()
SENTIMENT_NOUNS_DOMAIN = "blender phone laptop chair lamp kettle camera jacket".split()

# --- comparison -----------------------------------------------------------------------------------
# Animals from small to large: a later one is bigger than an earlier one.
SIZES = "ant bee mouse rabbit cat dog sheep horse elephant whale".split()
SIZES_LEXICAL = "fly spider frog squirrel fox wolf deer cow giraffe".split()
