// The package's main entry: the client API for Node.js servers (libblocklist).
export {
  ABUSIVE_BEHAVIOR,
  AUTH_FAIL,
  AUTH_OK,
  BAD_USER,
  Blocklist,
  DEFAULT_SOCKET_PATH,
  blocklist,
  blocklistOpen,
  blocklistSa,
  type BlocklistAction,
  type BlocklistLogger,
  type BlocklistOptions,
  type PeerAddress,
  type ReportedSocket,
} from './client/index.js';
