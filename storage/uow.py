"""Unit of work: one session, the repositories over it, and explicit commits.

Nothing is committed unless ``commit()`` is called; leaving the block rolls back what is left. The
repositories are plain typed attributes (as in cosmicpython's unit of work), so a type checker follows every
call; building them is cheap (each only keeps the session).
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from storage.repositories.batch_stats import BatchStatsRepository
from storage.repositories.batches import BatchRepository
from storage.repositories.builds import BuildRepository
from storage.repositories.chunks import ChunkRepository
from storage.repositories.drafts import DraftRepository
from storage.repositories.followups import FollowupRepository
from storage.repositories.heartbeats import WorkerRepository
from storage.repositories.judging import JudgementRepository, PolicyRepository
from storage.repositories.provider_jobs import ProviderJobRepository
from storage.repositories.records import RecordRepository
from storage.repositories.reviews import ReviewRepository
from storage.repositories.runs import RunRepository
from storage.repositories.users import UserRepository


class UnitOfWork:
    records: RecordRepository
    drafts: DraftRepository
    batches: BatchRepository
    chunks: ChunkRepository
    followups: FollowupRepository
    batch_stats: BatchStatsRepository
    heartbeats: WorkerRepository
    reviews: ReviewRepository
    builds: BuildRepository
    runs: RunRepository
    judgements: JudgementRepository
    policies: PolicyRepository
    users: UserRepository
    provider_jobs: ProviderJobRepository

    def __init__(self, session_factory: sessionmaker[Session]):
        self._factory = session_factory
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("UnitOfWork used outside its 'with' block")
        return self._session

    def __enter__(self) -> UnitOfWork:
        session = self._session = self._factory()
        self.records = RecordRepository(session)
        self.drafts = DraftRepository(session)
        self.batches = BatchRepository(session)
        self.chunks = ChunkRepository(session)
        self.followups = FollowupRepository(session)
        self.batch_stats = BatchStatsRepository(session)
        self.heartbeats = WorkerRepository(session)
        self.reviews = ReviewRepository(session)
        self.builds = BuildRepository(session)
        self.runs = RunRepository(session)
        self.judgements = JudgementRepository(session)
        self.policies = PolicyRepository(session)
        self.users = UserRepository(session)
        self.provider_jobs = ProviderJobRepository(session)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        session = self.session
        session.rollback()
        session.close()
        self._session = None

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()
