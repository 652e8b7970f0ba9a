"""Hypothesis strategies for valid protocol messages."""

from hypothesis import strategies as st

from hydramesh.common.errors import ErrorCode
from hydramesh.common.heartbeat import Heartbeat, ModelState, TaskProgress
from hydramesh.common.result import Accepted, Chunk, Failure, ImageInfo, Progress
from hydramesh.common.task import FORMATS, MAX_SEED, SCHEDULERS, CancelRequest, GenerateRequest, ResendRequest
from hydramesh.common.wire import MsgType

ids = st.from_regex(r"[A-Za-z0-9._:@/+=-]{1,64}", fullmatch=True)
texts = st.text(max_size=200)
sides = st.integers(1, 256).map(lambda n: n * 8)

generate_requests = st.builds(
    GenerateRequest,
    id=ids,
    prompt=st.text(min_size=1, max_size=300),
    negative_prompt=st.none() | texts,
    model=st.none() | st.text(min_size=1, max_size=60),
    width=st.none() | sides,
    height=st.none() | sides,
    steps=st.none() | st.integers(1, 150),
    guidance=st.none() | st.floats(0, 30, allow_nan=False),
    scheduler=st.none() | st.sampled_from(SCHEDULERS),
    seed=st.none() | st.integers(0, MAX_SEED),
    format=st.sampled_from(FORMATS),
    progress=st.booleans(),
    attempt=st.none() | st.integers(1, 1000),
)
task_messages = (
    generate_requests
    | st.builds(CancelRequest, id=ids, attempt=st.none() | st.integers(1, 1000))
    | st.builds(ResendRequest, id=ids, missing=st.lists(st.integers(0, 65535), max_size=50).map(tuple))
)

heartbeats = st.builds(
    Heartbeat,
    worker=st.text(min_size=1, max_size=40),
    boot=st.text(min_size=1, max_size=32),
    models=st.lists(
        st.builds(ModelState, name=st.text(min_size=1, max_size=40), state=st.sampled_from(("ready", "loading", "failed")), loaded=st.booleans()),
        max_size=4,
    ).map(tuple),
    capacity=st.integers(0, 64),
    free=st.integers(0, 64),
    queue=st.integers(0, 1000),
    in_flight=st.lists(st.builds(TaskProgress, id=ids, step=st.integers(0, 150), steps=st.integers(0, 150)), max_size=8).map(tuple),
    progress=st.integers(0, 1 << 40),
    state=st.sampled_from(("loading", "ready", "draining")),
    device=st.text(max_size=20),
    dtype=st.sampled_from(("float32", "float16", "bfloat16")),
    mem_free=st.none() | st.integers(0, 1 << 40),
    version=st.text(max_size=20),
    backend=st.sampled_from(("null", "diffusers")),
)

image_infos = st.builds(
    ImageInfo,
    id=ids,
    size=st.integers(0, 1 << 20),
    sha256=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    mime=st.sampled_from(("image/png", "image/webp", "image/jpeg")),
    seed=st.none() | st.integers(0, MAX_SEED),
    worker=st.text(max_size=30),
    width=st.integers(0, 4096),
    height=st.integers(0, 4096),
    timings=st.dictionaries(st.text(min_size=1, max_size=10), st.floats(0, 1e6, allow_nan=False), max_size=4),
)


@st.composite
def chunks(draw):
    info = draw(image_infos)
    count = draw(st.integers(1, 1000))
    index = draw(st.integers(0, count - 1))
    data = draw(st.binary(max_size=min(info.size, 300)))
    return Chunk(info, index, count), data


result_messages = (
    st.builds(Accepted, id=ids).map(lambda m: (m, b""))
    | st.builds(Progress, id=ids, step=st.integers(0, 200), steps=st.integers(0, 200)).map(lambda m: (m, b""))
    | st.builds(
        Failure,
        id=st.just("") | ids,
        code=st.sampled_from(list(ErrorCode)),
        message=texts,
        retry_after=st.none() | st.floats(0, 3600, allow_nan=False),
        field=st.none() | st.text(min_size=1, max_size=20),
    ).map(lambda m: (m, b""))
    | chunks()
)

msg_types = st.sampled_from(list(MsgType))
