// The names of the prediction models a lab may cite in `expect[].model`.
// Kept apart from the models themselves so validation needs no model code.

export const MODEL_NAMES = ['ephemeral-ports', 'fd-limit', 'connection-ceiling', 'memory-per-connection', 'time-wait', 'accept-queue', 'capacity'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];
