// Facade over rtnetlink: one handle per network namespace, e.g.
//   const host = await Rtnl.host();
//   const pod = await Rtnl.inNetns("/run/netns/pod1");
// Every operation on a handle acts in that handle's netns; operations on one handle run in order.
import * as addresses from "./addresses.js";
import { RtnlBatch } from "./batch.js";
import * as links from "./links.js";
import * as neighbours from "./neighbours.js";
import * as routes from "./routes.js";
import { RtnlSocket, type RtnlSocketOptions } from "./socket.js";
import * as tc from "./tc.js";

export type { Address, AddressFilter } from "./addresses.js";
export type { RtnlBatch, SkippedChange } from "./batch.js";
export type { Link, NetkitPolicyInput } from "./links.js";
export { ifNameToIndex, netnsExists, netnsInode, sameNetns, sysctlRead, sysctlWrite } from "./netns.js";
export type { TcBpfFilter, TcDirection } from "./tc.js";

export class Rtnl {
  private constructor(private readonly sock: RtnlSocket) {}

  static async open(options: RtnlSocketOptions = {}): Promise<Rtnl> {
    return new Rtnl(await RtnlSocket.open(options));
  }

  /** A handle acting in our own network namespace. */
  static host(options: { timeoutMs?: number } = {}): Promise<Rtnl> {
    return Rtnl.open(options);
  }

  /** A handle acting inside the netns at path (/run/netns/NAME, /proc/PID/ns/net, ...). */
  static inNetns(netnsPath: string, options: { timeoutMs?: number } = {}): Promise<Rtnl> {
    return Rtnl.open({ ...options, netnsPath });
  }

  /** The netns this handle acts in; undefined for our own. */
  get netnsPath(): string | undefined {
    return this.sock.netnsPath;
  }

  /** Changes to send together in one transaction (see batch.ts for what may share one). */
  batch(): RtnlBatch {
    return new RtnlBatch(this.sock);
  }

  /** Waits for queued operations, then closes the socket. */
  close(): Promise<void> {
    return this.sock.close();
  }

  // links
  createVeth(o: links.VethOptions): Promise<links.Link> {
    return links.createVeth(this.sock, o);
  }
  /** Throws NotSupportedError on kernels without netkit; nothing is left behind then. */
  createNetkit(o: links.NetkitOptions): Promise<links.Link> {
    return links.createNetkit(this.sock, o);
  }
  deleteLink(ref: links.LinkRef): Promise<boolean> {
    return links.deleteLink(this.sock, ref);
  }
  getLink(ref: links.LinkRef): Promise<links.Link | undefined> {
    return links.getLink(this.sock, ref);
  }
  requireLink(ref: links.LinkRef): Promise<links.Link> {
    return links.requireLink(this.sock, ref);
  }
  listLinks(): Promise<links.Link[]> {
    return links.listLinks(this.sock);
  }
  updateLink(ref: links.LinkRef, update: links.LinkUpdate): Promise<void> {
    return links.updateLink(this.sock, ref, update);
  }
  setLinkUp(ref: links.LinkRef, up = true): Promise<void> {
    return links.setLinkUp(this.sock, ref, up);
  }
  setMtu(ref: links.LinkRef, mtu: number): Promise<void> {
    return links.setMtu(this.sock, ref, mtu);
  }
  setOffloadSizes(ref: links.LinkRef, sizes: links.OffloadSizes): Promise<void> {
    return links.setOffloadSizes(this.sock, ref, sizes);
  }
  bigTcpLimits(ref: links.LinkRef): Promise<links.BigTcpLimits> {
    return links.bigTcpLimits(this.sock, ref);
  }
  renameLink(ref: links.LinkRef, name: string): Promise<void> {
    return links.renameLink(this.sock, ref, name);
  }
  /** Moves a link from this handle's netns into netnsPath, optionally renaming it there. */
  moveLink(ref: links.LinkRef, netnsPath: string, newName?: string): Promise<void> {
    return links.moveLink(this.sock, ref, netnsPath, newName);
  }

  // addresses
  addAddress(spec: addresses.AddressSpec): Promise<void> {
    return addresses.addAddress(this.sock, spec);
  }
  replaceAddress(spec: addresses.AddressSpec): Promise<void> {
    return addresses.replaceAddress(this.sock, spec);
  }
  deleteAddress(spec: addresses.AddressSpec): Promise<boolean> {
    return addresses.deleteAddress(this.sock, spec);
  }
  listAddresses(filter?: addresses.AddressFilter): Promise<addresses.Address[]> {
    return addresses.listAddresses(this.sock, filter);
  }

  // routes
  addRoute(spec: routes.RouteSpec): Promise<void> {
    return routes.addRoute(this.sock, spec);
  }
  replaceRoute(spec: routes.RouteSpec): Promise<void> {
    return routes.replaceRoute(this.sock, spec);
  }
  deleteRoute(spec: routes.RouteSpec): Promise<boolean> {
    return routes.deleteRoute(this.sock, spec);
  }
  listRoutes(filter?: routes.RouteFilter): Promise<routes.Route[]> {
    return routes.listRoutes(this.sock, filter);
  }

  // neighbours
  addNeighbour(spec: neighbours.NeighbourSpec): Promise<void> {
    return neighbours.addNeighbour(this.sock, spec);
  }
  replaceNeighbour(spec: neighbours.NeighbourSpec): Promise<void> {
    return neighbours.replaceNeighbour(this.sock, spec);
  }
  deleteNeighbour(spec: neighbours.NeighbourSpec): Promise<boolean> {
    return neighbours.deleteNeighbour(this.sock, spec);
  }
  listNeighbours(filter?: neighbours.NeighbourFilter): Promise<neighbours.Neighbour[]> {
    return neighbours.listNeighbours(this.sock, filter);
  }

  // tc (clsact + cls_bpf)
  ensureClsact(ifindex: number): Promise<void> {
    return tc.ensureClsact(this.sock, ifindex);
  }
  attachTcBpf(o: tc.TcBpfAttach): Promise<void> {
    return tc.attachTcBpf(this.sock, o);
  }
  detachTcBpf(o: Parameters<typeof tc.detachTcBpf>[1]): Promise<boolean> {
    return tc.detachTcBpf(this.sock, o);
  }
  listTcBpf(ifindex: number, direction: tc.TcDirection): Promise<tc.TcBpfFilter[]> {
    return tc.listTcBpf(this.sock, ifindex, direction);
  }
}
