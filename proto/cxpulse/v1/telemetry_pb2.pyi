from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AckStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACK_STATUS_UNSPECIFIED: _ClassVar[AckStatus]
    ACK_STATUS_STORED: _ClassVar[AckStatus]
    ACK_STATUS_DUPLICATE: _ClassVar[AckStatus]
    ACK_STATUS_REJECTED: _ClassVar[AckStatus]
ACK_STATUS_UNSPECIFIED: AckStatus
ACK_STATUS_STORED: AckStatus
ACK_STATUS_DUPLICATE: AckStatus
ACK_STATUS_REJECTED: AckStatus

class EnrollRequest(_message.Message):
    __slots__ = ("token", "agent_id", "host")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    token: str
    agent_id: str
    host: str
    def __init__(self, token: _Optional[str] = ..., agent_id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("credential", "agent_id", "site")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    credential: str
    agent_id: str
    site: str
    def __init__(self, credential: _Optional[str] = ..., agent_id: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("hello", "batch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: Batch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("config", "ack")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    config: AgentConfig
    ack: Ack
    def __init__(self, config: _Optional[_Union[AgentConfig, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agent_id", "host", "os_user", "os", "agent_version", "site", "seq_epoch", "payload_schema", "display_name")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    OS_USER_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    SEQ_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    host: str
    os_user: str
    os: str
    agent_version: str
    site: str
    seq_epoch: int
    payload_schema: int
    display_name: str
    def __init__(self, agent_id: _Optional[str] = ..., host: _Optional[str] = ..., os_user: _Optional[str] = ..., os: _Optional[str] = ..., agent_version: _Optional[str] = ..., site: _Optional[str] = ..., seq_epoch: _Optional[int] = ..., payload_schema: _Optional[int] = ..., display_name: _Optional[str] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("seq", "payload", "sample_count")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    payload: bytes
    sample_count: int
    def __init__(self, seq: _Optional[int] = ..., payload: _Optional[bytes] = ..., sample_count: _Optional[int] = ...) -> None: ...

class AgentConfig(_message.Message):
    __slots__ = ("version", "probe_interval_ms", "batch_interval_ms", "targets", "committed_seq", "reflector", "reflector_key", "voice_interval_ms", "apps", "app_interval_ms", "wifi_interval_ms", "hash_wifi_identity", "wifi_weak_rssi_dbm", "detector", "local_overrides")
    class DetectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROBE_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    REFLECTOR_FIELD_NUMBER: _ClassVar[int]
    REFLECTOR_KEY_FIELD_NUMBER: _ClassVar[int]
    VOICE_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    APP_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    WIFI_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    HASH_WIFI_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    WIFI_WEAK_RSSI_DBM_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    LOCAL_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    version: int
    probe_interval_ms: int
    batch_interval_ms: int
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    committed_seq: int
    reflector: str
    reflector_key: bytes
    voice_interval_ms: int
    apps: _containers.RepeatedCompositeFieldContainer[App]
    app_interval_ms: int
    wifi_interval_ms: int
    hash_wifi_identity: bool
    wifi_weak_rssi_dbm: int
    detector: _containers.ScalarMap[str, float]
    local_overrides: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., probe_interval_ms: _Optional[int] = ..., batch_interval_ms: _Optional[int] = ..., targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ..., committed_seq: _Optional[int] = ..., reflector: _Optional[str] = ..., reflector_key: _Optional[bytes] = ..., voice_interval_ms: _Optional[int] = ..., apps: _Optional[_Iterable[_Union[App, _Mapping]]] = ..., app_interval_ms: _Optional[int] = ..., wifi_interval_ms: _Optional[int] = ..., hash_wifi_identity: _Optional[bool] = ..., wifi_weak_rssi_dbm: _Optional[int] = ..., detector: _Optional[_Mapping[str, float]] = ..., local_overrides: _Optional[_Iterable[str]] = ...) -> None: ...

class App(_message.Message):
    __slots__ = ("name", "url", "apdex_t_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    APDEX_T_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    apdex_t_ms: int
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., apdex_t_ms: _Optional[int] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("name", "host", "port")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    port: int
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("seq", "status", "committed_seq", "code", "detail")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    status: AckStatus
    committed_seq: int
    code: int
    detail: str
    def __init__(self, seq: _Optional[int] = ..., status: _Optional[_Union[AckStatus, str]] = ..., committed_seq: _Optional[int] = ..., code: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...
