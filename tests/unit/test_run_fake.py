from sqlalchemy import func, select

from generation.backends import create_backend
from generation.run import generate_drafts
from generation.templates import load_template
from storage.models import Draft
from tests.helpers import add_records


def test_fake_run_writes_one_current_draft_per_record_and_skips_on_rerun(wired):
    with wired.uow() as uow:
        ids = add_records(uow, "d", [{"instruction": "Q1"}, {"instruction": "質問", "lang": "ja"}])
    backend = create_backend("fake", wired.settings)
    template = load_template()
    first = generate_drafts(wired.uow, ids, backend, template)
    again = generate_drafts(wired.uow, ids, backend, template)
    assert (first.done, again.done, again.skipped) == (2, 0, 2)
    with wired.uow() as uow:
        drafts = uow.session.scalars(select(Draft).order_by(Draft.record_id)).all()
        assert [d.is_fake for d in drafts] == [True, True]
        assert drafts[1].reasoning.startswith("Please translate the following Japanese")
        assert uow.session.scalar(select(func.count()).select_from(Draft)) == 2
