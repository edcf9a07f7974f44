# The two VPCs are peered so each region's MirrorMaker 2 reaches the other region's MSK brokers privately
# (MSK broker names resolve to private addresses). CIDRs must not overlap (see local.regions).

resource "aws_vpc_peering_connection" "use1_euw1" {
  provider    = aws.use1
  vpc_id      = module.use1.vpc_id
  peer_vpc_id = module.euw1.vpc_id
  peer_region = local.regions.euw1.aws_region
  auto_accept = false
  tags        = { Name = "isthmus-prod-use1-euw1" }
}

resource "aws_vpc_peering_connection_accepter" "use1_euw1" {
  provider                  = aws.euw1
  vpc_peering_connection_id = aws_vpc_peering_connection.use1_euw1.id
  auto_accept               = true
  tags                      = { Name = "isthmus-prod-use1-euw1" }
}

resource "aws_route" "use1_to_euw1" {
  provider                  = aws.use1
  count                     = length(local.regions.use1.azs)
  route_table_id            = module.use1.private_route_table_ids[count.index]
  destination_cidr_block    = local.regions.euw1.vpc_cidr
  vpc_peering_connection_id = aws_vpc_peering_connection.use1_euw1.id

  depends_on = [aws_vpc_peering_connection_accepter.use1_euw1]
}

resource "aws_route" "euw1_to_use1" {
  provider                  = aws.euw1
  count                     = length(local.regions.euw1.azs)
  route_table_id            = module.euw1.private_route_table_ids[count.index]
  destination_cidr_block    = local.regions.use1.vpc_cidr
  vpc_peering_connection_id = aws_vpc_peering_connection.use1_euw1.id

  depends_on = [aws_vpc_peering_connection_accepter.use1_euw1]
}
