// Package unionfs serves the merged view of a layer stack through go-fuse: one node per merged
// path, resolved with kernel overlayfs rules (the README's Semantics section states them) by
// the FUSE-free merge engine, package merge. This package keeps the nodes, the file and
// directory handles, every operation that writes (copy-up, create, remove, rename), identity
// and the raw-protocol hooks.
//
// # Concurrency
//
// go-fuse serves requests in parallel (over /dev/fuse from several reader goroutines, over
// io_uring one at a time per CPU queue), so every node method may run beside any other. The
// locks, in the order they may be taken (a lock is only ever taken while holding locks above
// it in this list, never below):
//
//  1. node.copyMu serialises the copy-up of one node. A copy-up first copies up the parent
//     chain, each node under its own copyMu taken and released in turn, then takes its own;
//     the one nesting is a hard link's copy-up, which, holding its copyMu, copies up the
//     directories of the link's other names (never the node itself), each under theirs.
//  2. dirStream.mu (dirstream.go) is held while one listing of a directory is read through the
//     bridge; dirStreams.mu guards only the map of streams and is taken alone.
//  3. dirHandle.mu guards one open directory's listing; file.mu guards one open file's
//     descriptors. Either may take node.mu (through node.parts, node.top …).
//  4. node.mu guards the node's placement and state: the fields of node marked "guarded by
//     mu". It is taken for short spans and no other lock of ours is taken under it.
//  5. Leaves, taken under any of the above and calling nothing that locks: dirIdentities.mu
//     (it reads go-fuse's parent links, which take go-fuse's own inode locks),
//     problemLog.mu, and the passthrough and request-extras maps (sync.Map).
//
// Helpers that expect a lock held say so in their names (…Locked) or in their doc comment.
// Objects themselves are never locked: a change the kernel serialises (an inode's i_rwsem)
// reaches us serialised; one it does not (two renames in different directories) meets the
// layers' own atomic operations (rename, link, RENAME_WHITEOUT) and the identity checks
// (node.isSelf) that turn a lost race into ENOENT or ESTALE.
package unionfs
