"""The edge rules of the API (members.identifiers, members.limits) applied to the staged rows of an order import,
whichever way they were staged (COPY and SQL on PostgreSQL, Python otherwise): one set-based pass per rule that marks
the rows breaking it as failed, with the reason added to the row's others."""
from django.db import connection

from members.identifiers import IDENTIFIER_MAX_LENGTH, IDENTIFIER_SQL_PATTERN
from members.limits import ORDER_AMOUNT_MAX, ORDER_QUANTITY_MAX

ID_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~:@-"
ID_REASON = "has characters other than letters, digits and . _ ~ : @ - (or does not begin with a letter or digit)"


def _outside_identifier_set(column: str) -> str:
    """SQL: the column is a non-empty id of allowed length outside the character set (empty and long ids have their
    own reasons already)."""
    if connection.vendor == "postgresql":
        # translate() is far cheaper than a regular expression on a million rows.
        outside = (f"(translate({column}, '{ID_CHARACTERS}', '') <> '' "
                   f"OR left({column}, 1) IN ('.', '_', '~', ':', '@', '-'))")
    else:
        outside = f"NOT ({column} REGEXP '{IDENTIFIER_SQL_PATTERN}')"
    return f"{column} <> '' AND length({column}) <= {IDENTIFIER_MAX_LENGTH} AND {outside}"


def staged_rows_check_edges() -> None:
    """Fail the staged rows (import_rows) whose order id or new customer id is outside the character set, or whose
    amount or quantity is above the largest the API takes. A customer id of a stored member is taken as it is:
    members from before the character set keep importing their orders."""
    failures = (
        (_outside_identifier_set("order_id"), f"order_id {ID_REASON}"),
        (
            _outside_identifier_set("customer_id")
            + " AND NOT EXISTS (SELECT 1 FROM members_member m WHERE m.external_id = import_rows.customer_id)",
            f"customer_id {ID_REASON}",
        ),
        (f"amount > {ORDER_AMOUNT_MAX}", f"amount too large (at most {ORDER_AMOUNT_MAX})"),
        (f"quantity > {ORDER_QUANTITY_MAX}", f"quantity too large (at most {ORDER_QUANTITY_MAX})"),
    )
    with connection.cursor() as cursor:
        for condition, reason in failures:
            cursor.execute(
                f"UPDATE import_rows SET error = COALESCE(error || '; ', '') || %s, outcome = 'failed' WHERE {condition}",
                [reason],
            )
