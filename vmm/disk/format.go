package disk

import "strconv"

// mke2fsConf replaces /etc/mke2fs.conf for every image, so an image has the
// same features whatever the host's e2fsprogs package ships: mke2fs 1.47
// upstream turns on orphan_file, which guest kernels before 5.15 cannot
// mount read-write, and a distribution may change its defaults in any
// release. The ext4 feature set is the one Debian 12 and Ubuntu 22.04 use,
// which every kernel a utility VM would boot (5.10 or later) supports;
// metadata_csum lets the guest's kernel notice corruption. The size classes
// (floppy … huge) are empty, so an image's block size and inode count are
// those of formatArgs whatever its size, and mke2fs does not warn of them
// missing. Blocks of 4 KiB and inodes of 256 bytes (room for nanosecond
// times and small xattrs inline) are the usual ext4 ones; inode ratio and
// journal size are passed on the command line (formatArgs).
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 65536

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	floppy = {
	}
	small = {
	}
	default = {
	}
	big = {
	}
	huge = {
	}
`

// Mke2fsConfig is the mke2fs.conf every distro disk is made with (the file
// MKE2FS_CONFIG names), on the host by Create and in the utility VM by its
// agent (FormatArgs), so that a disk made either way has the same features.
const Mke2fsConfig = mke2fsConf

// guestTreeInodes is the entries FormatArgs plans room for: the tree is
// not known when a disk is formatted before it is filled (in the VM), so
// the count is that of a small distro with its first packages (Debian's
// minbase has about 10,000).
const guestTreeInodes = 25000

// FormatArgs are mke2fs's arguments (run with MKE2FS_CONFIG naming a file
// holding Mke2fsConfig) to make an empty distro file system of size bytes
// on dev, a whole disk, as Create makes one from a tree: the same block
// size, journal, reserve, inode size and ratio, error behaviour and lazy
// initialization. The inode count has room for a distro of
// guestTreeInodes entries where the disk is large enough (a tree's count
// is planned at no more than a quarter of its blocks).
func FormatArgs(dev string, size int64, opts Options) []string {
	inodes := min(int64(guestTreeInodes), (size/BlockSize/2-16384)/2)
	return append(formatArgs(size, max(inodes, 0), opts), dev)
}

// formatArgs are mkfs.ext4's arguments for a file system of size bytes
// that will hold treeInodes entries, with each choice's reason; the
// caller adds the tree (-d) and the image.
func formatArgs(size, treeInodes int64, opts Options) []string {
	bpi := opts.BytesPerInode
	if bpi == 0 {
		bpi = DefaultBytesPerInode
	}
	journal := opts.JournalMiB
	if journal == 0 {
		// A small disk gets a journal of an eighth of it (4 MiB, 1024
		// blocks, at least: ext4's minimum), so that a disk of
		// MinMaxSize can be made at all; from 1 GiB up, the default.
		journal = int(min(DefaultJournalMiB, max(4, size>>20/8)))
	}
	args := []string{
		"-t", "ext4",
		// -F: image is a regular file, not a block device, and mkfs must
		// not stop to ask about it (or about the disk's old contents).
		"-F",
		"-q",
		"-b", strconv.Itoa(BlockSize),
		// -m 0: no blocks reserved for root. The reserve (5% by default,
		// 12.8 GiB of 256 GiB) exists so root daemons survive a full disk,
		// but what fills up first here is the host's disk, which the
		// reserve does not protect; it would only hide space from df.
		"-m", "0",
		// A real journal, of modest size: a distro disk must survive the
		// VM being killed; see DefaultJournalMiB for the size.
		"-J", "size=" + strconv.Itoa(journal),
		// assume_storage_prezeroed: the file is a fresh hole, which reads
		// as zeros, so mkfs need not write the inode tables or the journal
		// and marks the tables zeroed, so the guest's kernel does not
		// zero them either (its lazyinit thread would otherwise write,
		// and allocate on the host, every inode table: 1 GiB for 256 GiB).
		// lazy_*_init say the same to a mke2fs that reads them first.
		// nodiscard: discarding a hole only costs time.
		"-E", "lazy_itable_init=1,lazy_journal_init=1,assume_storage_prezeroed=1,nodiscard",
		// errors=remount-ro: a guest that finds corruption stops writing
		// rather than making it worse.
		"-e", "remount-ro",
	}
	// The inode count is fixed at mkfs (Grow adds inodes only in
	// proportion), so a tree with many small files gets at least twice
	// its own count plus 16 Ki, room for its first upgrades, even when
	// the ratio would give fewer.
	if need := 2*treeInodes + 16384; size/bpi < need {
		args = append(args, "-N", strconv.FormatInt(need, 10))
	} else {
		args = append(args, "-i", strconv.FormatInt(bpi, 10))
	}
	if opts.Label != "" {
		args = append(args, "-L", opts.Label)
	}
	return args
}
