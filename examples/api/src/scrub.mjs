// PII scrubbing shared by every signal: Sentry events, log records and span attributes.
//
// The same two rules as the FastAPI service (examples/fastapi-app/app/scrub.py):
// - a value stored under a sensitive key (password, token, card number, ...) is replaced whole;
// - free text (messages, URLs, query strings) has card numbers, emails, social-security numbers,
//   bearer tokens and sensitive `key=value` pairs masked in place.
// Query strings (`url.query`, Sentry's `query_string`, the query of a URL) are judged parameter by
// parameter on their decoded text: `%40` is an `@` and `%20` a space there. The cases both
// services must pass are in examples/contract.yaml.

export const FILTERED = '[Filtered]';

const _SENSITIVE_KEY =
  /pass(word|wd)?|secret|token|api[-_]?key|auth(orization)?|cookie|session|credit[-_]?card|card[-_]?(number|no)?|\bcc\b|cvv|cvc|ssn|social[-_]?security|private[-_]?key|e-?mail/i;
// key=value pairs in query strings, form bodies and log text.
const _SENSITIVE_PAIR =
  /([\w.-]*(?:pass(?:word|wd)?|secret|token|api[-_]?key|auth|cookie|session|card|cvv|cvc|ssn|e-?mail)[\w.-]*)(=|:\s*)([^&\s,;"']+)/gi;
const _BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;
// Also URL-encoded (`%40`), as emails appear in query strings.
const _EMAIL = /[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}/gi;
// 13-19 digits, optionally grouped by spaces or dashes; confirmed with the Luhn checksum so that
// ordinary long numbers (ids, timestamps) survive.
const _CARD_CANDIDATE = /(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])/g;
// US social-security numbers as written: 3-2-4 digits.
const _SSN = /(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])/g;
// Credentials in URLs: scheme://user:password@host
const _URL_USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+:[^/\s@]+@/gi;
const _MAX_DEPTH = 12;
// Preconditions of the patterns above (see scrubText).
const _BEARER_WORD = /bearer|basic/i;
const _FOUR_DIGITS = /\d[ -]?\d[ -]?\d[ -]?\d/;
// A V8 stack frame line: `    at fn (file:line:col)`.
const _FRAME_LINE = /^\s+at /;

export function isSensitiveKey(key) {
  return _SENSITIVE_KEY.test(key);
}

export function scrubText(text) {
  if (typeof text !== 'string' || text === '') {
    return text;
  }
  // Whole-token patterns first: a card number with spaces or a "Bearer x" would otherwise be cut
  // in half by the key=value rule, which stops at whitespace. Each pattern runs only when the
  // text holds what every match of it needs: most log fields and attributes hold none of it, and
  // the tests are much cheaper than the replacements (run on every log line and span).
  let out = text;
  const at = out.includes('@');
  if (at) {
    out = out.replace(_URL_USERINFO, `$1${FILTERED}@`);
  }
  if (_BEARER_WORD.test(out)) {
    out = out.replace(_BEARER, (_match, scheme) => `${scheme} ${FILTERED}`);
  }
  if (_FOUR_DIGITS.test(out)) {
    out = out.replace(_CARD_CANDIDATE, _maskCard);
    out = out.replace(_SSN, FILTERED);
  }
  if (at || out.includes('%40')) {
    out = out.replace(_EMAIL, FILTERED);
  }
  if (out.includes('=') || out.includes(':')) {
    out = out.replace(_SENSITIVE_PAIR, (_match, key, sep) => `${key}${sep}${FILTERED}`);
  }
  return out;
}

/**
 * Scrubs a formatted stack (`Error.stack`): the message lines, which may quote data (and may
 * span several lines), are scrubbed like free text; the `    at ...` frame lines are code
 * locations, not data, and are kept as they are. Frame lines are most of a stack, full of the
 * `:` and `@` that make every pattern run, so this is several times cheaper than scrubText on the
 * whole string.
 */
export function scrubStack(stack) {
  if (typeof stack !== 'string' || stack === '') {
    return stack;
  }
  const lines = stack.split('\n');
  const out = [];
  let text = [];
  for (const line of lines) {
    if (_FRAME_LINE.test(line)) {
      if (text.length > 0) {
        out.push(scrubText(text.join('\n')));
        text = [];
      }
      out.push(line);
    } else {
      text.push(line);
    }
  }
  if (text.length > 0) {
    out.push(scrubText(text.join('\n')));
  }
  return out.join('\n');
}

// Keys whose values are query strings or URLs (span attributes, Sentry's request data).
const _QUERY_KEYS = new Set(['url.query', 'query_string']);
const _URL_KEYS = new Set(['url.full', 'url', 'http.url']);

/**
 * A URL query string, each parameter judged on its decoded text. A parameter with nothing to hide
 * keeps its encoding; one that had something is encoded again from its scrubbed text
 * (`note=call%20[Filtered]`).
 */
export function scrubQuery(query) {
  if (typeof query !== 'string' || query === '') {
    return query;
  }
  return query
    .split('&')
    .map((pair) => {
      const at = pair.indexOf('=');
      const key = at === -1 ? pair : pair.slice(0, at);
      const value = at === -1 ? '' : pair.slice(at + 1);
      if (at !== -1 && value !== '' && isSensitiveKey(_decoded(key))) {
        return `${key}=${FILTERED}`;
      }
      const decoded = _decoded(at === -1 ? key : value);
      const scrubbed = scrubText(decoded);
      if (scrubbed === decoded) {
        return pair;
      }
      const encoded = encodeURIComponent(scrubbed).replaceAll('%5B', '[').replaceAll('%5D', ']');
      return at === -1 ? encoded : `${key}=${encoded}`;
    })
    .join('&');
}

function _decoded(text) {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return text; // malformed %-encoding: judged as it is
  }
}

function _scrubUrl(url) {
  const at = url.indexOf('?');
  return at === -1 ? scrubText(url) : `${scrubText(url.slice(0, at))}?${scrubQuery(url.slice(at + 1))}`;
}

/**
 * Returns a scrubbed copy of `value` found under `key`, recursing into arrays and plain objects.
 * Other objects (class instances, buffers) are returned unchanged.
 */
export function scrubValue(key, value, depth = 0) {
  if (key && isSensitiveKey(key) && value !== null && value !== undefined && value !== '') {
    return FILTERED;
  }
  if (typeof value === 'string') {
    if (_QUERY_KEYS.has(key)) {
      return scrubQuery(value);
    }
    if (_URL_KEYS.has(key)) {
      return _scrubUrl(value);
    }
    return key === 'stack' ? scrubStack(value) : scrubText(value);
  }
  if (depth >= _MAX_DEPTH || value === null || typeof value !== 'object') {
    return value;
  }
  if (Array.isArray(value)) {
    return value.map((item) => scrubValue(key, item, depth + 1));
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    return value;
  }
  const out = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = scrubValue(k, v, depth + 1);
  }
  return out;
}

// Parts of a Sentry event that describe the runtime, not the request: package names such as
// `cookie` or `js-tokens` must not be mistaken for secrets there.
const _EVENT_KEYS_KEPT = new Set(['modules', 'sdk', 'debug_meta', 'event_id', 'timestamp']);

/** Sentry `beforeSend` hook: scrubs the whole event, dropping the user's address and email. */
export function scrubSentryEvent(event) {
  const out = {};
  for (const [key, value] of Object.entries(event)) {
    if (_EVENT_KEYS_KEPT.has(key)) {
      out[key] = value;
    } else if (key === 'exception') {
      out[key] = _scrubException(value);
    } else {
      out[key] = scrubValue(key, value);
    }
  }
  if (out.user) {
    const { ip_address: _ip, email: _email, ...user } = out.user;
    out.user = user;
  }
  return out;
}

// Stack frames are code (file names, functions, source lines), not data, and are most of an
// event: they are kept, except captured local variables. Messages and mechanism data are
// scrubbed.
function _scrubException(exception) {
  if (!exception || !Array.isArray(exception.values)) {
    return scrubValue('exception', exception);
  }
  return {
    ...exception,
    values: exception.values.map((value) => {
      const { stacktrace, ...rest } = value;
      const out = scrubValue('', rest);
      if (stacktrace) {
        out.stacktrace = Array.isArray(stacktrace.frames)
          ? {
              ...stacktrace,
              frames: stacktrace.frames.map((frame) =>
                frame?.vars ? { ...frame, vars: scrubValue('', frame.vars) } : frame,
              ),
            }
          : stacktrace;
      }
      return out;
    }),
  };
}

/** Sentry `beforeBreadcrumb` hook. */
export function scrubBreadcrumb(breadcrumb) {
  return scrubValue('', breadcrumb);
}

function _maskCard(match) {
  const digits = match.replace(/\D/g, '');
  return digits.length >= 13 && digits.length <= 19 && _luhnValid(digits) ? FILTERED : match;
}

function _luhnValid(digits) {
  let total = 0;
  for (let index = 0; index < digits.length; index++) {
    let n = Number(digits[digits.length - 1 - index]);
    if (index % 2 === 1) {
      n = n > 4 ? n * 2 - 9 : n * 2;
    }
    total += n;
  }
  return total % 10 === 0;
}
