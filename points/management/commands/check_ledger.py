"""`manage.py check_ledger`: verify the ledger's invariants for every member; exit 1 and list them on a mismatch."""
from django.core.management.base import BaseCommand, CommandError

from members.models import Member
from points.selectors import ledger_mismatches


class Command(BaseCommand):
    help = (
        "Check for every member: transactions sum to available + pending - debt; available + pending equal the "
        "unspent remainder of lots; every lot and every debit agree with their allocations. Exits 1 on a mismatch."
    )

    def add_arguments(self, parser):
        parser.add_argument("--member", action="append", dest="members", metavar="EXTERNAL_ID", help="Check only these.")
        parser.add_argument("--limit", type=int, default=50, help="List at most this many members (all are counted).")

    def handle(self, *args, members, limit, **options):
        member_ids = None
        if members:
            member_ids = list(Member.objects.filter(external_id__in=members).values_list("pk", flat=True))
        problems = ledger_mismatches(member_ids=member_ids)
        if not problems:
            checked = len(member_ids) if member_ids is not None else Member.objects.count()
            self.stdout.write(self.style.SUCCESS(f"Ledger OK: {checked:,} members checked."))
            return
        names = dict(Member.objects.filter(pk__in=list(problems)[:limit]).values_list("pk", "external_id"))
        for member_id in list(problems)[:limit]:
            self.stderr.write(f"{names.get(member_id, member_id)}:")
            for problem in problems[member_id]:
                self.stderr.write(f"    {problem}")
        raise CommandError(f"Ledger mismatch for {len(problems):,} members.", returncode=1)
