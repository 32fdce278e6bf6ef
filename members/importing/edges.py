"""The edge rules of the API (members.identifiers, members.limits) applied to the staged rows of an order import,
whichever way they were staged (COPY and SQL on PostgreSQL, Python otherwise): one set-based pass marks the rows
breaking a rule as failed, with the reasons added to the row's others."""
from django.db import connection

from members.identifiers import IDENTIFIER_CHARACTERS, IDENTIFIER_FIRST, IDENTIFIER_MAX_LENGTH
from members.limits import ORDER_AMOUNT_MAX, ORDER_QUANTITY_MAX
from members.phones import InvalidPhone, phone_normalise

from .reading import shown

ID_REASON = "has characters other than letters, digits and . _ ~ : @ - (or does not begin with a letter or digit)"
# Outside the set (members.identifiers) = holds a character outside it, or begins with a non-alphanumeric. Two
# unanchored classes: on PostgreSQL ~1 µs a row, where the anchored pattern with {0,63} or a translate() of the
# allowed characters cost 8-10 µs (measured on 300,000 ids).
OUTSIDE_SET_PATTERN = f"[^{IDENTIFIER_CHARACTERS}]|^[^{IDENTIFIER_FIRST}]"


def _outside_identifier_set(column: str) -> str:
    """SQL: the column is a non-empty id of allowed length outside the character set (empty and long ids have their
    own reasons already)."""
    match = "~" if connection.vendor == "postgresql" else "REGEXP"  # Django gives SQLite a REGEXP function
    return f"({column} <> '' AND length({column}) <= {IDENTIFIER_MAX_LENGTH} AND {column} {match} '{OUTSIDE_SET_PATTERN}')"


def staged_rows_check_edges() -> None:
    """Fail the staged rows (import_rows) whose order id or new customer id is outside the character set, or whose
    amount or quantity is above the largest the API takes, in one pass. A customer id of a stored member is taken as
    it is: members from before the character set keep importing their orders."""
    failures = (
        (_outside_identifier_set("order_id"), f"order_id {ID_REASON}"),
        (
            f"({_outside_identifier_set('customer_id')}"
            " AND NOT EXISTS (SELECT 1 FROM members_member m WHERE m.external_id = import_rows.customer_id))",
            f"customer_id {ID_REASON}",
        ),
        (f"amount > {ORDER_AMOUNT_MAX}", f"amount too large (at most {ORDER_AMOUNT_MAX})"),
        (f"quantity > {ORDER_QUANTITY_MAX}", f"quantity too large (at most {ORDER_QUANTITY_MAX})"),
    )
    # Each broken rule adds "; <reason>"; substr(..., 3) drops the first separator (concat_ws is not in SQLite 3.40).
    reasons = " || ".join(f"CASE WHEN {condition} THEN %s ELSE '' END" for condition, _reason in failures)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE import_rows SET error = COALESCE(error || '; ', '') || substr({reasons}, 3), outcome = 'failed'
                WHERE {" OR ".join(condition for condition, _reason in failures)}""",
            [f"; {reason}" for _condition, reason in failures],
        )


def staged_rows_normalise_phones() -> None:
    """The staged rows' phones in E.164 (members.phones), each distinct phone read once; a row whose phone is not a
    valid number fails with "bad phone '...'". One UPDATE from a table of the block's distinct phones (~110 µs a
    distinct phone in Python)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT phone FROM import_rows WHERE phone <> ''")
        rows = []
        for (raw,) in cursor.fetchall():
            try:
                normalised = phone_normalise(raw)
            except InvalidPhone:
                rows.append((raw, raw, f"bad phone {shown(raw)}"))
                continue
            if normalised != raw:
                rows.append((raw, normalised, None))
        if not rows:
            return
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS import_phones (raw varchar(32) PRIMARY KEY, e164 varchar(32), error text)"
        )
        cursor.execute("DELETE FROM import_phones")
        cursor.executemany("INSERT INTO import_phones (raw, e164, error) VALUES (%s, %s, %s)", rows)
        cursor.execute(
            """UPDATE import_rows SET phone = p.e164,
                   error = CASE WHEN p.error IS NULL THEN import_rows.error
                                ELSE COALESCE(import_rows.error || '; ', '') || p.error END,
                   outcome = CASE WHEN p.error IS NULL THEN import_rows.outcome ELSE 'failed' END
               FROM import_phones p WHERE p.raw = import_rows.phone"""
        )
