// iommud as a library: the emulator core (no HTTP), the daemon's app factory and the SDK.
export { IommuError, ERROR_STATUS, type ErrorCode } from './errors.js';
export { PROFILES, MSM8X60, TINY, validateProfile, type Profile } from './hw/profile.js';
export { Soc } from './hw/soc.js';
export { Smmu, TxnResult } from './hw/smmu.js';
export { Tlb } from './hw/tlb.js';
export { Iommu } from './iommu/iommu.js';
export { Domain } from './iommu/domain.js';
export { DmaApi } from './dma/dma.js';
export { IovaAllocator } from './dma/iova.js';
export { PhysMemory } from './memory/phys.js';
export { V7sTable, walk, WalkResult } from './pgtable/v7s.js';
export * as desc from './pgtable/desc.js';
export { Session, SessionRegistry } from './session/session.js';
export type { Command } from './session/commands.js';
export { build, type BuildOptions } from './server/app.js';
export { IommudClient, SessionClient, EventSubscription, TranslateStream, IommudError, IommudConnectionError, isBounceEvent, isCoherencyEvent } from './client/index.js';
export type { BounceEvent, CoherencyEvent, EventOf, EventType, IommudEvent, SubscribeOptions } from './client/index.js';
export * as stream from './api/stream.js';
