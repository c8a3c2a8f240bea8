// Public surface of the payments package. Each helper has one home: mint URLs
// in mint-url.ts, amounts in amounts.ts, mint HTTP in wallet-mint.ts and
// mint-http.ts, Cashu curve and P2PK code in hash-to-curve.ts, p2pk.ts, lock.ts
// (built on the shared secp256k1 and BIP-340 code in src/crypto/).
export { Wallet } from './wallet.js'
export type { Balance, FundOptions, FundResult, LockForPayeeOptions, LockedProof, MeltResult, ReceiveResult, ReclaimResult, RecoveryReport, WalletHooks, WalletOptions } from './wallet.js'
export { ProofStore, listWalletMints, storePath } from './proof-store.js'
export type { LockInfo, Operation, ProofState, RetirableOp, RetiredOp, SentToken, SpentReason, WalletFile } from './proof-store.js'
export { WaitAborted } from './quote-wait.js'
export { decodeToken, encodeToken, sumAmounts, MAX_TOKEN_CHARS, MAX_TOKEN_PROOFS } from './token.js'
export { normalizeMintUrl, sameMint } from './mint-url.js'
/** @deprecated the same function as normalizeMintUrl (there is one normalisation now) */
export { normalizeMintUrl as normalizeWalletMintUrl } from './mint-url.js'
export { splitAmount, isPowerOfTwo, MAX_PROOF_AMOUNT, MAX_SATS } from './amounts.js'
export { MAX_MINT_RESPONSE_BYTES } from './mint-http.js'
export type { DecodedToken } from './token.js'
export { blindSecret, randomOutput, unblind, unblindWithKey } from './lock.js'
export type { BlindedOutput, UnblindedProof } from './lock.js'
// Provider side of ticks: payment key, offline verification, durable store, batched redemption.
export { loadOrCreatePaymentKey, paymentKeyFromPrivkey, PAYMENT_KEY_FILE } from './payment-key.js'
export type { PaymentKey } from './payment-key.js'
export { hashToCurve, secretToY, secretToYHex } from './hash-to-curve.js'
export { verifyProofDleq, verifyBlindSignatureDleq } from './dleq.js'
export type { DleqProof, ProofLike } from './dleq.js'
export {
  parseP2PKSecret,
  claimsP2PKLock,
  makeP2PKSecret,
  normalizePubkey,
  sameXOnly,
  pubkeyOf,
  SchnorrSigner,
  signP2PKSecret,
  withWitness,
  MAX_SECRET_LENGTH,
} from './p2pk.js'
export type { P2PKLock, P2PKSecret, P2PKParse, SigFlag } from './p2pk.js'
export { MintKeyCache, deriveKeysetIdV00, MINT_KEYS_FILE } from './mint-keys.js'
export type { KeysetInfo, KeysetLookup, KeysetRefusalCode, MintKeyCacheOptions, MintRecord, MintSyncResult } from './mint-keys.js'
export { ReceivedStore, RECEIVED_LOG_FILE, RECEIVED_LOG_VERSION } from './received-store.js'
export type { AcceptResult, JournalOutput, ReceivedEntry, ReceivedState, ReceivedStoreOptions, RedeemJournal, RetiredRedeem, StoreCounts, StoredProof } from './received-store.js'
export { TickVerifier } from './tick-verifier.js'
export type { TickRefusalCode, TickVerdict, TickVerifierOptions } from './tick-verifier.js'
export { Redeemer } from './redeemer.js'
export type { RedeemedProof, RedeemerOptions, RedeemerStats, RedeemReport } from './redeemer.js'
