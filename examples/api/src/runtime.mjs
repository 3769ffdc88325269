// Hands what instrument.mjs started (configuration, telemetry providers) to the application.

let _telemetry;

export function setTelemetry(telemetry) {
  _telemetry = telemetry;
}

/** What instrument.mjs started, or undefined when the service runs without it. */
export function getTelemetry() {
  return _telemetry;
}
