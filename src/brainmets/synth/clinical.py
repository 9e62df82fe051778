"""Synthetic patient identities and the clinical workbook (with planted defects).

The workbook follows the reference collection's coding (``/shared/docs/conventions.md``):
Sex 0 male / 1 female; Ethnicity 0 White, 1 White Hispanic, 2 White/Black, 3 Black,
4 Asian/Pacific Islander; Primary 1 breast, 2 GI, 3 SCLC, 4 melanoma, 5 NSCLC, 6 RCC,
7 other; Extranodal and Death 0/1; Smoke in pack-years; Age in years (days/365) at
diagnosis; Survival in months (days/30) from diagnosis to death or last follow-up.
It is keyed by the hospital MRN (the pipeline maps MRNs to pseudonyms).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainmets.fsutil import atomic_write_bytes
from brainmets.vocab import PRIMARY as PRIMARY_CODES

FAMILY = [
    "HARTLEY",
    "OKONKWO",
    "LINDQVIST",
    "MORENO",
    "TANAKA",
    "FITZGERALD",
    "NOVAK",
    "BRENNAN",
    "SCHAEFER",
    "DUBOIS",
    "KOWALSKI",
    "ABERNATHY",
    "CASTELLANOS",
    "NAKAMURA",
    "OYELARAN",
    "PETROVA",
    "WHITAKER",
    "VANDERMEER",
    "GALLAGHER",
    "MBEKI",
    "SORENSEN",
    "RAMIREZ",
    "HOLLOWAY",
    "KIRKPATRICK",
    "ESPOSITO",
    "LAURENT",
    "YILMAZ",
    "CHEN",
    "ADEYEMI",
    "HALVORSEN",
    "MACINTYRE",
    "DRUMMOND",
    "BELLAMY",
    "OSTROWSKI",
    "QUINTERO",
    "ASHWORTH",
]
GIVEN_M = [
    "JONATHAN",
    "RAFAEL",
    "MIKHAIL",
    "TOBIAS",
    "SAMUEL",
    "KENJI",
    "OLUWASEUN",
    "HENRIK",
    "PATRICK",
    "AUGUST",
    "MATTEO",
    "DESMOND",
    "ELIAS",
    "GRANT",
    "VIKTOR",
]
GIVEN_F = [
    "MARGARET",
    "INGRID",
    "SOFIA",
    "AMARA",
    "YUKI",
    "CLAIRE",
    "BEATRIZ",
    "HELENA",
    "NADIA",
    "ROSALIND",
    "FIONA",
    "CHIAMAKA",
    "ELENA",
    "GRETA",
    "LUCIA",
]
PHYSICIANS = [
    "WINTERBOTTOM^ALISTAIR^^DR",
    "FERREIRA^LUISA^^DR",
    "OKAFOR^EMEKA^^DR",
    "LINDGREN^ASTRID^^DR",
    "PARK^MINSEO^^DR",
    "GOLDBERG^NATHAN^^DR",
]
OPERATORS = ["RT^JENSEN", "MRT^BAUER", "TECH^ALVAREZ", "RT^OBRIEN", "MTRA^KLEIN"]
STREETS = [
    "Elm Street",
    "Birchwood Lane",
    "Mill Road",
    "Station Avenue",
    "Quarry Close",
    "Rosenweg",
    "Chemin du Lac",
]
TOWNS = ["Northfield", "Millbrook", "Ostwald", "Lakeside", "Ferreol", "Ashby"]

#: primary cancer code -> the words the synthetic referral history uses (the codebook's
#: labels, spelled out where a referring physician would)
PRIMARY = {**PRIMARY_CODES, 2: "gastrointestinal", 6: "renal cell"}
PRIMARY_WEIGHTS = {1: 0.16, 2: 0.07, 3: 0.08, 4: 0.12, 5: 0.40, 6: 0.05, 7: 0.12}
COLUMNS = [
    "MRN",
    "Age",
    "Sex",
    "Ethnicity",
    "Smoke",
    "Primary",
    "Extranodal",
    "Survival",
    "Death",
    "Diagnosis_date",
    "Last_contact_date",
]
DESCRIPTION = [
    ("MRN", "hospital medical record number (identifying; replaced by a pseudonym)"),
    ("Age", "age at diagnosis of brain metastases, years (days/365)"),
    ("Sex", "0 male, 1 female"),
    ("Ethnicity", "0 White, 1 White Hispanic, 2 White/Black, 3 Black, 4 Asian/Pacific Islander"),
    ("Smoke", "smoking history in pack-years"),
    ("Primary", "1 breast, 2 GI, 3 SCLC, 4 melanoma, 5 NSCLC, 6 RCC, 7 other"),
    ("Extranodal", "extranodal (extracranial) metastasis at diagnosis: 0 no, 1 yes"),
    ("Survival", "months (days/30) from diagnosis to death or last follow-up"),
    ("Death", "0 alive at last follow-up, 1 deceased"),
    ("Diagnosis_date", "date of diagnosis of brain metastases"),
    ("Last_contact_date", "date of death (Death = 1) or of last follow-up (Death = 0)"),
]


@dataclass
class Identity:
    """Everything identifying about one synthetic patient."""

    index: int
    mrn: str
    family: str
    given: str
    middle: str
    sex: str  # "M" | "F"
    birth_date: dt.date
    weight_kg: float
    height_m: float
    address: str
    phone: str
    other_id: str
    referring: str
    performing: str
    operator: str

    @property
    def dicom_name(self) -> str:
        return f"{self.family}^{self.given}^{self.middle}"

    @property
    def display_name(self) -> str:
        return f"{self.given.title()} {self.family.title()}"


@dataclass
class ClinicalRecord:
    mrn: str
    age: float
    sex: int
    ethnicity: int
    smoke: float
    primary: int
    extranodal: int
    survival: float
    death: int
    diagnosis_date: dt.date
    last_contact_date: dt.date

    def row(self) -> list:
        return [
            self.mrn,
            self.age,
            self.sex,
            self.ethnicity,
            self.smoke,
            self.primary,
            self.extranodal,
            self.survival,
            self.death,
            self.diagnosis_date,
            self.last_contact_date,
        ]


def make_identities(seed: int, n: int) -> list[Identity]:
    """Unique, fictional identities (names, MRNs) for ``n`` patients."""
    rng = np.random.default_rng([seed, 7])
    used_mrn: set[str] = set()
    used_names: set[tuple[str, str]] = set()
    out = []
    for i in range(n):
        sex = "F" if rng.random() < 0.52 else "M"
        while True:
            family = str(FAMILY[int(rng.integers(len(FAMILY)))])
            given = str((GIVEN_F if sex == "F" else GIVEN_M)[int(rng.integers(15))])
            if (family, given) not in used_names or len(used_names) > 400:
                break
        used_names.add((family, given))
        while True:
            mrn = str(int(rng.integers(10_000_000, 99_999_999)))
            if mrn not in used_mrn:
                break
        used_mrn.add(mrn)
        age_days = int(rng.normal(62, 11) * 365.25)
        age_days = int(np.clip(age_days, 28 * 365, 89 * 365))
        birth = dt.date(2019, 6, 1) - dt.timedelta(days=age_days)
        height = float(np.round(rng.normal(1.64 if sex == "F" else 1.77, 0.07), 2))
        weight = float(np.round(rng.normal(68 if sex == "F" else 82, 12), 1))
        out.append(
            Identity(
                index=i,
                mrn=mrn,
                family=family,
                given=given,
                middle=chr(ord("A") + int(rng.integers(26))),
                sex=sex,
                birth_date=birth,
                weight_kg=weight,
                height_m=height,
                address=f"{int(rng.integers(1, 300))} {STREETS[int(rng.integers(len(STREETS)))]}"
                f", {TOWNS[int(rng.integers(len(TOWNS)))]}",
                phone=f"+1-555-{int(rng.integers(100, 999))}-{int(rng.integers(1000, 9999))}",
                other_id=f"INS{int(rng.integers(10**8, 10**9 - 1))}",
                referring=PHYSICIANS[int(rng.integers(len(PHYSICIANS)))],
                performing=PHYSICIANS[int(rng.integers(len(PHYSICIANS)))],
                operator=OPERATORS[int(rng.integers(len(OPERATORS)))],
            )
        )
    return out


def make_clinical(
    rng: np.random.Generator, ident: Identity, diagnosis: dt.date, followup_date: dt.date | None
) -> ClinicalRecord:
    """Clinical fields consistent with the identity and the imaging dates."""
    keys = list(PRIMARY_WEIGHTS)
    w = np.array([PRIMARY_WEIGHTS[k] for k in keys])
    if ident.sex == "M":
        w[0] = 0.005
    primary = int(keys[int(rng.choice(len(keys), p=w / w.sum()))])
    lung = primary in (3, 5)
    smoker = rng.random() < (0.85 if lung else 0.45)
    smoke = float(np.round(rng.gamma(3.0, 12.0), 1)) if smoker else 0.0
    eth = int(rng.choice(5, p=[0.68, 0.08, 0.03, 0.13, 0.08]))
    extranodal = int(rng.random() < 0.6)
    death = int(rng.random() < 0.65)
    months = float(rng.exponential(11.0) + 0.5)
    days = int(months * 30)
    if followup_date is not None:
        days = max(days, (followup_date - diagnosis).days + int(rng.integers(20, 200)))
    last = diagnosis + dt.timedelta(days=days)
    age = (diagnosis - ident.birth_date).days / 365.0
    return ClinicalRecord(
        mrn=ident.mrn,
        age=round(age, 2),
        sex=0 if ident.sex == "M" else 1,
        ethnicity=eth,
        smoke=smoke,
        primary=primary,
        extranodal=extranodal,
        survival=round(days / 30.0, 2),
        death=death,
        diagnosis_date=diagnosis,
        last_contact_date=last,
    )


def plant_defects(rng: np.random.Generator, records: list[ClinicalRecord]) -> list[dict]:
    """Realistic data-entry defects that validation must catch; returns their list.

    * a missing pack-years value (``Smoke`` empty);
    * a code typed as misspelt text (``Primary`` "NCSLC" instead of 5, or similar);
    * a letter O typed for the digit 0 in ``Ethnicity``.
    """
    defects: list[dict] = []
    if not records:
        return defects
    order = [int(i) for i in rng.permutation(len(records))]
    typos = {1: "Breats", 2: "GI tract", 3: "SCLC ", 4: "Melanom", 5: "NCSLC", 6: "RCC?", 7: "othr"}

    def take(k: int) -> ClinicalRecord:
        return records[order[k % len(order)]]

    r = take(0)
    defects.append(
        {"mrn": r.mrn, "column": "Smoke", "kind": "missing", "value": None, "expected": r.smoke}
    )
    r.smoke = float("nan")
    r = take(1)
    defects.append(
        {
            "mrn": r.mrn,
            "column": "Primary",
            "kind": "text typo in a code",
            "value": typos[r.primary],
            "expected": r.primary,
        }
    )
    r.primary = typos[r.primary]  # type: ignore[assignment]
    taken = {id(take(0)), id(take(1))}
    eth_target = next(
        (records[i] for i in order if records[i].ethnicity == 0 and id(records[i]) not in taken),
        None,
    )
    if eth_target is not None and len(records) > 2:
        defects.append(
            {
                "mrn": eth_target.mrn,
                "column": "Ethnicity",
                "kind": "letter O for digit 0",
                "value": "O",
                "expected": 0,
            }
        )
        eth_target.ethnicity = "O"  # type: ignore[assignment]
    return defects


def write_workbook(path: Path, records: list[ClinicalRecord], fixed_time: dt.datetime) -> Path:
    """Write the ``Data`` and ``Description`` sheets; byte-reproducible (fixed zip times and
    document properties)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(COLUMNS)
    for rec in records:
        row = rec.row()
        row = [None if isinstance(v, float) and np.isnan(v) else v for v in row]
        ws.append(row)
    for c in ws["A"][1:]:
        c.number_format = "@"
    for col in ("J", "K"):
        for c in ws[col][1:]:
            c.number_format = "yyyy-mm-dd"
    wd = wb.create_sheet("Description")
    wd.append(["Column", "Description"])
    for name, text in DESCRIPTION:
        wd.append([name, text])
    wb.properties.creator = "brainmets synthetic cohort"
    wb.properties.created = fixed_time
    wb.properties.modified = fixed_time
    buf = io.BytesIO()
    wb.save(buf)
    return atomic_write_bytes(path, _normalise_zip(buf.getvalue(), fixed_time))


def _normalise_zip(data: bytes, when: dt.datetime) -> bytes:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(
                    rb"(<dcterms:(created|modified)[^>]*>)[^<]*(<)",
                    lambda m: m.group(1) + stamp.encode() + m.group(3),
                    content,
                )
            zi = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            dst.writestr(zi, content)
    return out.getvalue()
