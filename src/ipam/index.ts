export * from "./cidr.js";
export * from "./ipam.js";
