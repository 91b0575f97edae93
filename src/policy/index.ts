export { type HostPort, type IP, canonicalIp, formatHostPort, isValidHostname, normalizeName, parseIp, splitHostPort } from "./address.ts";
export { checkDestinations, formatPolicy } from "./check.ts";
export {
  ALLOW_ALL,
  type Choice,
  DEFAULT_ALLOW,
  DEFAULT_DENY,
  type Decision,
  type Operation,
  type RuleSet,
  chooseAddress,
  compileRules,
  decideAddress,
  decideName,
  filterResolved,
} from "./decide.ts";
export { type Entry, type HostPattern, PolicyEntryError, formatEntry, parseEntry } from "./entry.ts";
export { type PolicyConfig, PolicyFileError, defaultPolicy, loadPolicyFile, parsePolicy, unrestrictedPolicy } from "./load.ts";
export { NONPUBLIC_RANGES, type NonpublicRange, isLocalhostName, nonpublicRange } from "./nonpublic.ts";
export { ALL_PORTS, PortError, type PortRange, formatPortList, formatPortRange, parsePortList, parsePortRange, portAllowed } from "./ports.ts";
