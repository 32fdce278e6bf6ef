"""The docs stay true where they name code: docs/security.md's cited tests exist; the README's order pipeline names the
handlers of LOYALTY_ORDER_HANDLERS and LOYALTY_REFUND_HANDLERS in their order; docs/configuration.md lists exactly the
environment variables the settings read; docs/commands.md lists exactly our management commands; every relative link
in the README and docs/ points to a file that exists; every module, function and repository path they name exists.
Each failure names what is missing or extra."""
import ast
import re
from pathlib import Path
from urllib.parse import unquote

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
SECURITY = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
TEST_SOURCES = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
APPS = ("members", "tiers", "points", "campaigns")


def test_every_test_file_the_security_page_cites_exists():
    cited = set(re.findall(r"tests/[\w/]+\.py", SECURITY))
    assert cited
    assert sorted(path for path in cited if not (ROOT / path).is_file()) == []


def test_every_test_the_security_page_cites_exists():
    cited = {name for name in re.findall(r"\btest_\w+", SECURITY) if not name.startswith("test_docs")}
    defined = set(re.findall(r"def (test_\w+)", TEST_SOURCES))
    # A file name such as test_api_errors is cited as a path, not as a test.
    files = {path.stem for path in (ROOT / "tests").rglob("test_*.py")}
    assert sorted(cited - defined - files) == []


# --- (a) the README's order pipeline --------------------------------------------------------------------------------

def _markdown_section(text: str, heading: str) -> str:
    """The body of the section whose heading line contains `heading`, up to the next heading of the same or a higher
    level (fenced code blocks are not headings)."""
    lines = text.splitlines()
    fenced = False
    start = level = None
    body = []
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"(#+) ", line)
        if start is None:
            if match and heading in line:
                start, level = True, len(match.group(1))
            continue
        if match and len(match.group(1)) <= level:
            break
        body.append(line)
    assert start, f"no section with the heading {heading!r}"
    return "\n".join(body)


def _numbered_handlers(section: str) -> list[str]:
    """The dotted path each item of the section's numbered list opens with: "1. `app.module.handler` — ..."."""
    return re.findall(r"^\d+\.\s+`([\w.]+)`", section, flags=re.MULTILINE)


def _compare_in_order(documented: list[str], configured: list[str], what: str) -> None:
    missing = [name for name in configured if name not in documented]
    extra = [name for name in documented if name not in configured]
    assert not missing and not extra, f"{what}: missing from the README {missing}, not in the settings {extra}"
    assert documented == configured, f"{what}: the README's order {documented} differs from the settings' {configured}"


def test_the_readme_order_pipeline_names_every_order_handler_in_order():
    pipeline = _markdown_section(README, "## The order pipeline")
    documented = _numbered_handlers(_markdown_section(pipeline, "`LOYALTY_ORDER_HANDLERS`"))
    _compare_in_order(documented, list(settings.LOYALTY_ORDER_HANDLERS), "LOYALTY_ORDER_HANDLERS")


def test_the_readme_order_pipeline_names_every_refund_handler_in_order():
    pipeline = _markdown_section(README, "## The order pipeline")
    documented = _numbered_handlers(_markdown_section(pipeline, "`LOYALTY_REFUND_HANDLERS`"))
    _compare_in_order(documented, list(settings.LOYALTY_REFUND_HANDLERS), "LOYALTY_REFUND_HANDLERS")


# --- (b) docs/configuration.md and the environment variables the settings read --------------------------------------

def _environment_variables_read(source: str) -> set[str]:
    """Every variable name passed as the first argument of a call on the django-environ reader (`env("X")`,
    `env.bool("X")`, `env.db_url_config(...)` excepted: it takes a URL) or of os.environ.get / os.getenv /
    os.environ[...]. Read from the source with ast, so a comment or a string elsewhere never counts."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            reader = (isinstance(func, ast.Name) and func.id == "env") or (
                isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env"
            )
            os_read = isinstance(func, ast.Attribute) and (
                (func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os")
                or (func.attr == "get" and isinstance(func.value, ast.Attribute) and func.value.attr == "environ")
            )
            if reader or os_read:
                value = node.args[0].value
                if isinstance(value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", value):
                    names.add(value)
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "environ":
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                names.add(node.slice.value)
    return names


def test_the_variable_reader_finds_each_way_of_reading_the_environment():
    source = 'env("A")\nenv.bool("B", default=False)\nos.environ.get("C")\nos.getenv("D")\nos.environ["E"]\n' \
             'env.db_url_config(DATABASE_URL)\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "x")\n'
    assert _environment_variables_read(source) == {"A", "B", "C", "D", "E"}


def test_the_configuration_page_lists_exactly_the_environment_variables_the_settings_read():
    # config/settings.py and any module it is split into (config/*.py): every variable the composition root reads.
    read = set()
    for path in sorted((ROOT / "config").glob("*.py")):
        read |= _environment_variables_read(path.read_text(encoding="utf-8"))
    assert "DATABASE_URL" in read and "SECRET_KEY" in read  # the reader still understands the settings
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    # The first cell of each table row names the variable(s) in backticks.
    documented = set()
    for row in re.findall(r"^\|\s*([^|]+?)\s*\|", page, flags=re.MULTILINE):
        documented |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", row))
    assert not read - documented, f"read by the settings, missing from docs/configuration.md: {sorted(read - documented)}"
    assert not documented - read, f"in docs/configuration.md, read by no setting: {sorted(documented - read)}"


# --- (c) the command table --------------------------------------------------------------------------------------------

def test_the_command_table_lists_exactly_the_management_commands_of_our_apps():
    commands = {
        path.stem
        for app in APPS
        for path in (ROOT / app).rglob("management/commands/*.py")
        if not path.name.startswith("_")
    }
    assert "import_orders" in commands
    page = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\|\s*`(\w+)", page, flags=re.MULTILINE))
    assert not commands - documented, f"commands missing from docs/commands.md: {sorted(commands - documented)}"
    assert not documented - commands, f"in docs/commands.md, no such command: {sorted(documented - commands)}"


# --- (d) relative links -------------------------------------------------------------------------------------------------

def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _relative_links(text: str) -> list[str]:
    """Markdown link targets ([text](target)) outside fenced code, without a scheme, a leading / or a bare #anchor."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [t for t in targets if not re.match(r"[a-zA-Z][\w+.-]*:", t) and not t.startswith(("#", "/"))]


def test_every_relative_link_in_the_readme_and_docs_points_to_a_file_that_exists():
    broken = []
    for document in _documents():
        for target in _relative_links(document.read_text(encoding="utf-8")):
            path = unquote(target.split("#", 1)[0])
            if not (document.parent / path).exists():
                broken.append(f"{document.relative_to(ROOT)} -> {target}")
    assert broken == [], f"links to files that do not exist: {broken}"


def test_the_readme_is_an_entry_of_at_most_150_lines_that_indexes_every_document():
    assert len(README.splitlines()) <= 150
    linked = {unquote(t.split("#", 1)[0]) for t in _relative_links(README)}
    unlisted = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").rglob("*.md"))
                if str(p.relative_to(ROOT)) not in linked]
    assert unlisted == [], f"documents in docs/ the README's index does not list: {unlisted}"


# --- (e) the code the docs name -------------------------------------------------------------------------------------

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DOTTED_NAME = re.compile(r"`((?:members|tiers|points|campaigns|config)(?:\.[A-Za-z_]\w*)+)(?:\(\))?`")
REPO_PATH = re.compile(r"`((?:members|tiers|points|campaigns|config|templates|tests|bench|locale|docs)/[\w./-]*)`")


def _resolves(dotted: str) -> bool:
    """Whether a dotted name is a module, or an attribute reached from the longest importable module prefix."""
    import importlib

    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_every_module_function_and_file_the_docs_name_exists():
    """A module moved or a function renamed without its docs fails here. Names that are not code are allowed by what
    they are: Celery task names (the registry) and webhook event types."""
    from celery import current_app

    from members.webhooks.models import WebhookEvent

    current_app.loader.import_default_modules()
    not_code = set(current_app.tasks) | set(WebhookEvent.values)
    missing = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        where = doc.relative_to(ROOT).as_posix()
        missing += [f"{where}: {name}" for name in DOTTED_NAME.findall(text)
                    if name not in not_code and not _resolves(name)]
        # A path ending in "/" names a folder; an API path such as `members/shop/42/` is not a file of ours.
        missing += [f"{where}: {path}" for path in REPO_PATH.findall(text)
                    if not (ROOT / path.rstrip("/")).exists() and not re.search(r"/\d+/?$", path)]
    assert missing == []
