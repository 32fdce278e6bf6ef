"""Historical imports: order exports (streamed, set-based), members, opening balances and tiers.

- `reading`: the files people really have (encodings, delimiters, headers, dates, amounts), in Python.
- `orders`: `orders_import()`, the engine behind `manage.py import_orders` and the admin's order import: the file
  goes in batches into a staging table (COPY on PostgreSQL), is validated and written set-based in SQL, then one
  backfill pass brings the members' aggregates, growth, points and tiers up to date.
"""
from .reading import (  # noqa: F401
    FIELDS,
    REQUIRED,
    ImportFileError,
    ImportRow,
    detect_encoding,
    map_headers,
    parse_amount,
    parse_placed_at,
    parse_status,
    read_orders,
)
