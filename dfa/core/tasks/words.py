"""Word lists the task generators draw from; each tokenizer's checks drop the entries it splits."""

from __future__ import annotations

MALE_NAMES = (
    "John James Michael David Robert William Richard Thomas Charles Daniel Matthew Mark Paul "
    "Steven Andrew Kevin Brian George Edward Peter Jack Adam Ryan Jacob Eric Scott Frank Henry "
    "Sam Tom Joe Mike Chris Ben Max Tim Luke Jason Justin Patrick Sean Tony Bob Bill Jim Dan "
    "Fred Carl Ray Roger Harry Martin Simon Victor Oliver Ian Greg Nick Kyle Aaron Jesse"
).split()
FEMALE_NAMES = (
    "Mary Patricia Jennifer Linda Elizabeth Susan Jessica Sarah Karen Lisa Nancy Betty Sandra "
    "Ashley Emily Donna Michelle Laura Amy Anna Rachel Kate Emma Julia Alice Grace Rose Helen "
    "Ruth Jane Lucy Sophie Claire Diana Eva Maria Nina Sara Amanda Melissa Rebecca Stephanie "
    "Katie Megan Hannah Olivia Ellen Joan Kelly Julie Heather Tina Anne Carol Margaret Victoria"
).split()
# IOI: base names and, for the lexical family, a disjoint set.
IOI_NAMES = MALE_NAMES[::2] + FEMALE_NAMES[::2]
IOI_NAMES_LEXICAL = MALE_NAMES[1::2] + FEMALE_NAMES[1::2]

PLACES = "store garden restaurant school hospital office house station park beach".split()
OBJECTS = "drink bone basketball computer necklace ring snack book bottle letter".split()
PLACES_LEXICAL = "market library museum church airport cafe hotel bank mall zoo".split()
OBJECTS_LEXICAL = "gift ticket flower key coin toy map camera pen watch".split()

# Greater-than: nouns of events with a span (Hanna et al. 2023 use similar ones).
GT_NOUNS = "war expedition drought siege famine plague rebellion dynasty voyage crusade".split()
GT_NOUNS_LEXICAL = "conflict pilgrimage occupation reign blockade exile revolt migration strike truce".split()
GT_NOUNS_DOMAIN = "contract lease partnership experiment study survey apprenticeship project".split()

# Subject-verb agreement: (singular, plural) pairs.
SVA_NOUNS = [
    (w, w + "s")
    for w in (
        "author pilot doctor teacher farmer singer lawyer student officer driver writer player "
        "manager dancer painter baker guard nurse artist worker"
    ).split()
]
SVA_NOUNS_LEXICAL = [
    ("friend", "friends"),
    ("neighbor", "neighbors"),
    ("senator", "senators"),
    ("customer", "customers"),
    ("child", "children"),
    ("man", "men"),
    ("woman", "women"),
    ("boy", "boys"),
    ("girl", "girls"),
    ("soldier", "soldiers"),
    ("athlete", "athletes"),
    ("chef", "chefs"),
    ("engineer", "engineers"),
    ("scientist", "scientists"),
    ("judge", "judges"),
    ("king", "kings"),
    ("captain", "captains"),
    ("visitor", "visitors"),
]
SVA_NOUNS_DOMAIN = [
    (w, w + "s")
    for w in "dog cat horse bird planet star cell machine computer robot river mountain tree flower car truck".split()
]
SVA_ATTRACTORS = [(w, w + "s") for w in "car table window building tree house door wall road desk".split()]
# (singular verb, plural verb) for the word after the subject.
SVA_VERBS = (("is", "are"), ("was", "were"), ("has", "have"))

GENDER_ROLES = "friend cook driver singer teacher neighbor".split()

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()

COUNTRY_CAPITALS = {
    "France": "Paris",
    "England": "London",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "Russia": "Moscow",
    "Egypt": "Cairo",
    "Greece": "Athens",
    "Austria": "Vienna",
    "Ireland": "Dublin",
    "Portugal": "Lisbon",
    "Poland": "Warsaw",
    "Hungary": "Budapest",
    "Sweden": "Stockholm",
    "Norway": "Oslo",
    "Finland": "Helsinki",
    "Denmark": "Copenhagen",
    "Belgium": "Brussels",
    "Netherlands": "Amsterdam",
    "China": "Beijing",
    "India": "Delhi",
    "Thailand": "Bangkok",
    "Vietnam": "Hanoi",
    "Korea": "Seoul",
    "Iran": "Tehran",
    "Iraq": "Baghdad",
    "Syria": "Damascus",
    "Lebanon": "Beirut",
    "Israel": "Jerusalem",
    "Turkey": "Ankara",
    "Kenya": "Nairobi",
    "Cuba": "Havana",
    "Peru": "Lima",
    "Chile": "Santiago",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Mexico": "Mexico",
    "Argentina": "Buenos",
    "Colombia": "Bogota",
    "Venezuela": "Caracas",
    "Pakistan": "Islamabad",
    "Afghanistan": "Kabul",
    "Nigeria": "Abuja",
    "Ukraine": "Kiev",
    "Scotland": "Edinburgh",
    "Wales": "Cardiff",
    "Switzerland": "Bern",
    "Romania": "Bucharest",
    "Serbia": "Belgrade",
    "Bulgaria": "Sofia",
    "Czech Republic": "Prague",
    "Saudi Arabia": "Riyadh",
    "Qatar": "Doha",
    "Jordan": "Amman",
    "Ethiopia": "Addis",
    "Ghana": "Accra",
    "Senegal": "Dakar",
    "Morocco": "Rabat",
    "Tunisia": "Tunis",
    "Libya": "Tripoli",
    "Sudan": "Khartoum",
    "Uganda": "Kampala",
    "Zimbabwe": "Harare",
    "Philippines": "Manila",
    "Indonesia": "Jakarta",
    "Malaysia": "Kuala",
    "Taiwan": "Taipei",
    "Nepal": "Kathmandu",
    "Bangladesh": "Dhaka",
}
STATE_CAPITALS = {
    "Massachusetts": "Boston",
    "Colorado": "Denver",
    "Texas": "Austin",
    "Georgia": "Atlanta",
    "Arizona": "Phoenix",
    "Tennessee": "Nashville",
    "Indiana": "Indianapolis",
    "Ohio": "Columbus",
    "Virginia": "Richmond",
    "Utah": "Salt",
    "Hawaii": "Honolulu",
    "Minnesota": "Saint",
    "Oklahoma": "Oklahoma",
    "Wisconsin": "Madison",
    "California": "Sacramento",
    "Florida": "Tallahassee",
    "Illinois": "Springfield",
    "Louisiana": "Baton",
    "Michigan": "Lansing",
    "Missouri": "Jefferson",
    "Kentucky": "Frankfort",
    "Alabama": "Montgomery",
    "Arkansas": "Little",
    "Nevada": "Carson",
    "Oregon": "Salem",
    "Washington": "Olympia",
    "Iowa": "Des",
    "Nebraska": "Lincoln",
    "Idaho": "Boise",
    "Maine": "Augusta",
    "Vermont": "Montpelier",
    "Delaware": "Dover",
    "Connecticut": "Hartford",
    "Mississippi": "Jackson",
}

# Multiple choice: category -> members; distractors come from the other categories.
MCQA_CATEGORIES = {
    "animal": "dog cat horse lion tiger bear wolf rabbit mouse cow sheep goat".split(),
    "fruit": "apple banana orange grape lemon cherry peach mango pear melon".split(),
    "color": "red blue green yellow purple orange pink brown black white".split(),
    "vehicle": "car bus truck train bicycle boat plane ship taxi van".split(),
    "drink": "coffee tea milk juice water beer wine soda".split(),
}
MCQA_CATEGORIES_LEXICAL = {
    "tool": "hammer saw drill wrench knife shovel axe rake".split(),
    "instrument": "piano guitar violin drum flute trumpet harp organ".split(),
    "body part": "hand foot head arm leg eye nose ear".split(),
    "sport": "soccer tennis golf hockey baseball cricket rugby boxing".split(),
}
MCQA_CATEGORIES_DOMAIN = {
    "planet": "Mars Venus Jupiter Saturn Mercury Neptune Earth Uranus".split(),
    "metal": "iron gold silver copper lead zinc steel tin".split(),
    "gas": "oxygen hydrogen nitrogen helium carbon neon argon methane".split(),
    "organ": "heart liver lung kidney brain stomach skin spleen".split(),
}
