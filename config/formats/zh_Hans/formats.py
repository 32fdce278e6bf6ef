"""Number formats of the Chinese console, over Django's own zh_Hans formats (which group nothing: "1234567").

Finance and operators read amounts and counts grouped by thousands with commas (1,234,567.00), as Chinese banking
and reporting software shows them; everything else (dates, input formats) comes from Django's zh_Hans module."""

THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
