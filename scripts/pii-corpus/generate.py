#!/usr/bin/env python3
"""Writes the PII evaluation corpus: labelled sentences that none of privprep's own code produced.

The sentences are templates written by hand for this corpus; their slots are filled by Faker's
providers (https://pypi.org/project/Faker/) in many locales. Every filled slot of a personal kind
is recorded as a span with UTF-8 *byte* offsets (`start`, `end`), which the Rust evaluation uses,
and character offsets (`start_char`, `end_char`) for tools that count characters.
Negative slots (order numbers, timestamps, versions, prices, ISBNs, UUIDs, tracking numbers,
driver licences, routing numbers, postcodes) are recorded as `negative` spans: a detection that
overlaps one is a false positive, whatever its kind.

Usage: python3 scripts/pii-corpus/generate.py [--rows N] [--seed S] > tests/data/pii_corpus.jsonl
Requires: pip install faker==40.63.0 (the version the committed corpus was made with).
"""

import argparse
import datetime
import json
import random
import string
import sys
import uuid

from faker import Faker

# Locales whose providers fill the slots (at least 15, several scripts and numbering plans).
LOCALES = [
    "en_US", "en_GB", "en_CA", "en_AU", "en_IN", "en_IE", "de_DE", "de_AT", "de_CH", "fr_FR",
    "fr_CH", "es_ES", "es_MX", "it_IT", "nl_NL", "nl_BE", "pt_BR", "pt_PT", "pl_PL", "sv_SE",
    "da_DK", "no_NO", "fi_FI", "cs_CZ", "hu_HU", "ro_RO", "tr_TR", "ru_RU", "ja_JP", "ko_KR",
    "zh_CN",
]

# Templates by the kind they exercise. `{name}` etc. are slots; a template may mix kinds and
# negatives. Phone templates deliberately include some without a cue word.
TEMPLATES = {
    "phone": [
        "Please call me at {phone} after 5pm.",
        "My phone number is {phone}.",
        "You can reach {name} on {phone} during office hours.",
        "Tel: {phone}",
        "Customer asked us to ring {phone} instead of emailing.",
        "New mobile: {phone} (the old one was lost).",
        "Contact number {phone}, ask for {first_name}.",
        "Text me on {phone} when the parcel arrives.",
        "{name} left a voicemail, callback {phone}.",
        "WhatsApp {phone} if the driver cannot find the house.",
        "Updated contact details: {phone}, {email}.",
        "Fax {phone} is no longer in use.",
        "I tried {phone} twice but nobody answered.",
        "Best number to reach me: {phone}",
        "Phone {phone} / order {order}",
        "Call back requested on {phone} regarding ticket {ticket}.",
        "{phone} is my work line, please use it on weekdays.",
        "Her cell is {phone} and her landline {phone2}.",
        "Rufen Sie mich bitte unter {phone} an.",
        "Mon numéro de téléphone est le {phone}.",
        "Mi teléfono es {phone}, gracias.",
        "Il mio numero è {phone}.",
        "Meu telefone é {phone}.",
        "Mijn telefoonnummer is {phone}.",
        "Mój numer telefonu to {phone}.",
        "The invoice {order} was sent; questions to {phone}.",
    ],
    "card": [
        "Please charge my card {card} for the renewal.",
        "Card number: {card}, expiry {expiry}.",
        "I paid with {card} on {date} but was charged twice.",
        "The refund should go back to card {card}.",
        "{name} read out the card {card} over the phone.",
        "Payment failed for {card_type} ending in {card} - please retry.",
        "CC {card} exp {expiry} cvv {cvv}",
        "Can you update the billing card to {card}?",
        "Order {order}: paid by credit card {card}.",
        "Bitte buchen Sie von meiner Karte {card} ab.",
        "My new Visa is {card}.",
        "Charge {card} for {price}.",
    ],
    "ssn": [
        "My SSN is {ssn}.",
        "Social security number {ssn} was entered wrong on the form.",
        "For the tax form: SSN {ssn}, DOB {date}.",
        "{name} (SSN {ssn}) asked for a copy of the statement.",
        "The applicant's social security no. is {ssn}.",
        "Please verify SS# {ssn} against the payroll record.",
        "I gave my social {ssn} to the agent on {date}.",
        "Taxpayer id {ssn} belongs to {name}.",
    ],
    "iban": [
        "Please refund to IBAN {iban}.",
        "Our bank details: {iban}, reference {order}.",
        "{name} changed the payout account to {iban}.",
        "Transfer the deposit to {iban} by {date}.",
        "Bankverbindung: {iban}",
        "Mon IBAN est {iban}.",
        "Direct debit from {iban} failed on {date}.",
    ],
    "email": [
        "Send the receipt to {email} please.",
        "My email changed to {email}.",
        "{name} <{email}> wrote on {date}:",
        "Contact {email} for the invoice {order}.",
        "Reply-to: {email}",
        "Could you cc {email} on the next update?",
        "Login {email} cannot reset the password.",
    ],
    "ip": [
        "The request came from {ipv4} at {time}.",
        "Blocked login attempts from {ipv4} and {ipv4b}.",
        "Client IP {ipv6} failed the check.",
        "My router's public address is {ipv4}.",
        "Seen from {ipv6} using version {version}.",
        "Whitelist {ipv4} for {name}, please.",
    ],
    "name": [
        "Spoke with {name} about the delay.",
        "{name} called about order {order}.",
        "Dear {name}, thank you for your patience.",
        "Kind regards, {name}",
        "My name is {name} and I need help with my account.",
        "Agent {name} escalated the ticket to {name2}.",
        "{first_name} from billing will follow up tomorrow.",
        "Please ask {name} to sign the form on behalf of {name2}.",
        "My daughter {first_name} opened the account, not me.",
        "Thanks to {name} for sorting this out so quickly!",
        "Mr. {last_name} said the package never arrived.",
        "Ms {last_name} will be back on {date}.",
        "Transferred to {name} in the returns team.",
        "Hi {first_name}, the replacement ships {date}.",
        "The form was signed by {name} and witnessed by {name2}.",
        "Account holder: {name}",
        "{name} lives at {address}.",
    ],
    "negative": [
        "Order {order} shipped on {date} with tracking {tracking}.",
        "Firmware {version} fixed the crash reported at {timestamp}.",
        "The total was {price} including tax.",
        "ISBN {isbn} is out of stock until {date}.",
        "Request id {uuid} timed out after {ms} ms.",
        "Tracking number {tracking}; parcel weight {weight} kg.",
        "Driver licence {license} was scanned at the desk.",
        "Routing number {routing} for the branch transfer.",
        "Ticket {ticket} merged into {ticket2} on {timestamp}.",
        "Barcode {ean} does not scan.",
        "Build {build} failed on {timestamp}; rolling back to {version}.",
        "Postcode {postcode}, building {building}, floor {floor}.",
        "Event at epoch {epoch} was logged twice.",
        "Invoice {invoice} of {price} is due on {date}.",
        "Serial number {serial} is under warranty until {date}.",
        "SKU {sku} restocked: {qty} units at {price}.",
        "The meeting is on {date} at {time} in room {room}.",
        "Account {account_ref} was closed at {timestamp}.",
    ],
    # Numbers with no word saying what they are: counts, amounts, years, measures, lists.
    "plain_numbers": [
        "We processed {count} requests last month and {count2} this month.",
        "The population grew to {thousands} by {year}.",
        "Between {year} and {year2} the fee rose by {pct}.",
        "It took {count} seconds, about {decimal} minutes.",
        "Scores this round: {small} {small2} {small3} {small4}.",
        "The warehouse holds {thousands} items across {small} aisles.",
        "Coordinates {coord}, elevation {small}m.",
        "Sizes {small} to {small2} are back, {count} pairs in total.",
        "Revenue was {amount} in Q{quarter} {year}.",
        "{name} has been with us since {year} and placed {small} orders.",
        "Room temperature was {small}.{small2} degrees at {time}.",
        "The file is {count} bytes, the archive {count2} bytes.",
    ],
}

# Slots of personal kinds, and the label their span gets.
LABELLED = {
    "phone": "phone", "phone2": "phone", "card": "card", "ssn": "ssn", "iban": "iban",
    "email": "email", "ipv4": "ip", "ipv4b": "ip", "ipv6": "ip", "name": "person",
    "name2": "person", "first_name": "person", "last_name": "person", "address": "address",
}
# Slots that must not be flagged.
NEGATIVE = {
    "order", "tracking", "version", "timestamp", "price", "isbn", "uuid", "license", "routing",
    "ticket", "ticket2", "ean", "build", "postcode", "epoch", "invoice", "serial", "sku", "date",
    "time", "expiry", "cvv", "ms", "weight", "building", "floor", "qty", "room", "account_ref",
    "card_type", "count", "count2", "thousands", "year", "year2", "pct", "decimal", "small",
    "small2", "small3", "small4", "coord", "amount", "quarter",
}

# Faker draws dates up to "now" unless told otherwise; a fixed end keeps the corpus the same
# whenever it is made.
END = datetime.datetime(2026, 11, 1)

CARD_TYPES = ["amex", "diners", "discover", "jcb15", "jcb16", "maestro", "mastercard", "visa13",
              "visa16", "visa19"]


def grouped_card(rng, number):
    """A card number as people write it: compact, or in groups by space or dash."""
    style = rng.random()
    if style < 0.4:
        return number
    sep = " " if style < 0.8 else "-"
    if len(number) == 15:
        parts = [number[:4], number[4:10], number[10:]]
    elif len(number) == 14:
        parts = [number[:4], number[4:10], number[10:]]
    else:
        parts = [number[i:i + 4] for i in range(0, len(number), 4)]
    return sep.join(parts)


def ssn_written(rng, fake_us):
    ssn = fake_us.ssn()
    digits = ssn.replace("-", "")
    style = rng.random()
    if style < 0.6:
        return ssn
    if style < 0.8:
        return f"{digits[:3]} {digits[3:5]} {digits[5:]}"
    return digits


def iban_written(rng, fake):
    iban = fake.iban()
    if rng.random() < 0.5:
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def phone_written(rng, fake):
    r = rng.random()
    if r < 0.1:
        return fake.msisdn() if hasattr(fake, "msisdn") else fake.phone_number()
    return fake.phone_number()


def negative_value(rng, slot, fake):
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))
    up = lambda n: "".join(rng.choice(string.ascii_uppercase) for _ in range(n))
    if slot == "order":
        return rng.choice([f"#{d(6)}", f"ORD-{d(4)}-{d(6)}", f"{up(2)}{d(8)}", f"order-{d(7)}",
                           f"SO{d(9)}"])
    if slot == "invoice":
        return rng.choice([f"INV-{d(6)}", f"{d(4)}/{d(5)}", f"F{d(10)}"])
    if slot == "tracking":
        return rng.choice([f"1Z{up(3)}{d(3)}{d(10)}", d(12), d(22), f"{up(2)}{d(9)}{up(2)}",
                           f"JD{d(18)}"])
    if slot == "version":
        return rng.choice([f"{rng.randint(0, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
                           f"v{rng.randint(1, 9)}.{rng.randint(0, 9)}",
                           f"{rng.randint(1, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}.{d(4)}"])
    if slot == "build":
        return rng.choice([f"#{d(5)}", d(8), f"{d(4)}.{d(2)}.{d(2)}.{d(3)}"])
    if slot == "timestamp":
        return rng.choice([fake.iso8601(end_datetime=END), fake.date_time(end_datetime=END).strftime("%Y-%m-%d %H:%M:%S"),
                           fake.date_time(end_datetime=END).strftime("%d/%m/%Y %H:%M"),
                           fake.date_time(end_datetime=END).strftime("%Y%m%d%H%M%S")])
    if slot == "epoch":
        return str(fake.unix_time(end_datetime=END)).split(".")[0]
    if slot == "date":
        return rng.choice([fake.date(end_datetime=END), fake.date(pattern="%d.%m.%Y", end_datetime=END),
                           fake.date(pattern="%m/%d/%Y", end_datetime=END),
                           fake.date(pattern="%d %B %Y", end_datetime=END)])
    if slot == "time":
        return fake.time(pattern=rng.choice(["%H:%M", "%H:%M:%S", "%I:%M %p"]), end_datetime=END)
    if slot == "price":
        return rng.choice([fake.pricetag(), f"{d(1)},{d(3)}.{d(2)} EUR", f"€{d(3)},{d(2)}",
                           f"{d(4)}.{d(2)} USD", f"£{d(2)}.{d(2)}"])
    if slot == "isbn":
        return rng.choice([fake.isbn13(), fake.isbn10()])
    if slot == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if slot == "license":
        return rng.choice([d(9), f"{up(1)}{d(7)}", f"{up(1)}{d(12)}", f"{up(1)}{d(3)}-{d(4)}-{d(4)}",
                           f"{d(3)} {d(3)} {d(3)}", f"{up(5)}{d(6)}{up(2)}{d(1)}{up(2)}"])
    if slot == "routing":
        return aba(rng)
    if slot in ("ticket", "ticket2"):
        return rng.choice([f"#{d(5)}", f"TCK-{d(6)}", f"INC{d(7)}"])
    if slot == "ean":
        return rng.choice([fake.ean13(), fake.ean8()])
    if slot == "postcode":
        return fake.postcode()
    if slot == "serial":
        return rng.choice([f"SN{d(10)}", f"{up(3)}{d(7)}", d(11)])
    if slot == "sku":
        return rng.choice([f"SKU-{d(5)}", f"{d(3)}-{d(3)}-{d(3)}", f"{up(2)}-{d(4)}"])
    if slot == "account_ref":
        return rng.choice([f"ACC-{d(8)}", f"{d(4)}-{d(4)}", f"CUST{d(6)}"])
    if slot == "expiry":
        return f"{rng.randint(1, 12):02d}/{rng.randint(25, 34)}"
    if slot == "cvv":
        return d(3)
    if slot == "ms":
        return str(rng.randint(100, 99999))
    if slot == "weight":
        return f"{rng.randint(0, 40)}.{d(1)}"
    if slot == "building":
        return fake.building_number() if hasattr(fake, "building_number") else d(2)
    if slot == "floor":
        return str(rng.randint(1, 40))
    if slot == "qty":
        return str(rng.randint(1, 5000))
    if slot == "room":
        return rng.choice([d(3), f"{up(1)}{d(3)}", f"{d(1)}.{d(2)}"])
    if slot in ("count", "count2"):
        return str(rng.choice([rng.randint(1000, 99999), rng.randint(100000, 9999999),
                               rng.randint(10**7, 10**11)]))
    if slot == "thousands":
        n = rng.randint(10**4, 10**10)
        sep = rng.choice([",", " ", ".", "\u00a0"])
        return f"{n:,}".replace(",", sep)
    if slot in ("year", "year2"):
        return str(rng.randint(1950, 2030))
    if slot == "pct":
        return f"{rng.randint(0, 99)}.{d(1)}%"
    if slot == "decimal":
        return f"{rng.randint(0, 999)}.{d(2)}"
    if slot in ("small", "small2", "small3", "small4"):
        return str(rng.randint(1, 999))
    if slot == "coord":
        return f"{rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f}"
    if slot == "amount":
        return rng.choice([f"${rng.randint(1, 999)},{d(3)},{d(3)}", f"{rng.randint(1, 999)} {d(3)} {d(3)} EUR",
                           f"{rng.randint(1, 99)}.{d(1)}M"])
    if slot == "quarter":
        return str(rng.randint(1, 4))
    if slot == "card_type":
        return rng.choice(["Visa", "Mastercard", "Amex"])
    raise KeyError(slot)


def aba(rng):
    """A US bank routing number with a valid check digit (3-7-1 weights)."""
    while True:
        digits = [rng.randint(0, 9) for _ in range(8)]
        digits[0] = rng.choice([0, 1, 2, 3])
        s = 3 * (digits[0] + digits[3] + digits[6]) + 7 * (digits[1] + digits[4] + digits[7]) \
            + (digits[2] + digits[5])
        check = (10 - s % 10) % 10
        return "".join(map(str, digits + [check]))


def labelled_value(rng, slot, fake, fake_us):
    if slot in ("phone", "phone2"):
        return phone_written(rng, fake)
    if slot == "card":
        return grouped_card(rng, fake_us.credit_card_number(rng.choice(CARD_TYPES)))
    if slot == "ssn":
        return ssn_written(rng, fake_us)
    if slot == "iban":
        return iban_written(rng, fake)
    if slot == "email":
        return fake.email()
    if slot in ("ipv4", "ipv4b"):
        return fake.ipv4_public() if rng.random() < 0.7 else fake.ipv4()
    if slot == "ipv6":
        return fake.ipv6()
    if slot in ("name", "name2"):
        return fake.name()
    if slot == "first_name":
        return fake.first_name()
    if slot == "last_name":
        return fake.last_name()
    if slot == "address":
        return fake.address().replace("\n", ", ")
    raise KeyError(slot)


def fill(template, rng, fake, fake_us):
    """Fills a template; returns (text, spans) with UTF-8 byte offsets."""
    out = bytearray()
    spans = []
    i = 0
    while i < len(template):
        if template[i] == "{":
            j = template.index("}", i)
            slot = template[i + 1:j]
            if slot in LABELLED:
                value, label = labelled_value(rng, slot, fake, fake_us), LABELLED[slot]
            elif slot in NEGATIVE:
                value, label = negative_value(rng, slot, fake), "negative"
            else:
                raise KeyError(slot)
            start, start_char = len(out), len(out.decode())
            out += value.encode()
            spans.append({"start": start, "end": len(out), "start_char": start_char,
                          "end_char": start_char + len(value), "type": label, "slot": slot})
            i = j + 1
        else:
            out += template[i].encode()
            i += 1
    return out.decode(), spans


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=20261126)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    fakers = {}
    for loc in LOCALES:
        f = Faker(loc)
        f.seed_instance(rng.randrange(1 << 30))
        fakers[loc] = f
    fake_us = fakers["en_US"]
    kinds = list(TEMPLATES)
    # Phones and names are where detectors disagree most: they get more sentences.
    weights = {"phone": 4, "name": 3, "negative": 3, "plain_numbers": 2, "card": 2, "ssn": 1,
               "iban": 1, "email": 1, "ip": 1}
    for n in range(args.rows):
        kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
        template = rng.choice(TEMPLATES[kind])
        loc = rng.choice(LOCALES)
        text, spans = fill(template, rng, fakers[loc], fake_us)
        json.dump({"id": n, "locale": loc, "template": kind, "text": text, "spans": spans},
                  sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
